{#- Engine-specific timestamp SQL. Models call these; each engine gets its own implementation. -#}

{#- A timestamp from whole seconds since the Unix epoch (MovieLens' rating time). -#}
{% macro epoch_seconds_to_timestamp(column) -%}
    {{ return(adapter.dispatch("epoch_seconds_to_timestamp")(column)) }}
{%- endmacro %}

{% macro default__epoch_seconds_to_timestamp(column) -%}
    {{ raise_not_implemented("epoch_seconds_to_timestamp") }}
{%- endmacro %}

{% macro spark__epoch_seconds_to_timestamp(column) -%}
    timestamp_seconds({{ column }})
{%- endmacro %}
