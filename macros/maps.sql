{#- Engine-specific map SQL. -#}

{#- The keys of a map column, as an array (unnest it for one row per entry; read a value with
    column[key]). -#}
{% macro map_keys(column) -%}
    {{ return(adapter.dispatch("map_keys")(column)) }}
{%- endmacro %}

{% macro default__map_keys(column) -%}
    {{ raise_not_implemented("map_keys") }}
{%- endmacro %}

{% macro spark__map_keys(column) -%}
    map_keys({{ column }})
{%- endmacro %}
