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


{#- Seconds from `start` to `end` (timestamps), with the fractional part: stream latencies are
    often under a second. -#}
{% macro seconds_between(start, end) -%}
    {{ return(adapter.dispatch("seconds_between")(start, end)) }}
{%- endmacro %}

{% macro default__seconds_between(start, end) -%}
    {{ raise_not_implemented("seconds_between") }}
{%- endmacro %}

{% macro spark__seconds_between(start, end) -%}
    (unix_micros({{ end }}) - unix_micros({{ start }})) / 1e6
{%- endmacro %}


{#- An array of every minute from `start` to `end` (both minute-truncated timestamps, inclusive),
    for a spine that gives empty minutes a row: explode it with `unnest`. -#}
{% macro minute_sequence(start, end) -%}
    {{ return(adapter.dispatch("minute_sequence")(start, end)) }}
{%- endmacro %}

{% macro default__minute_sequence(start, end) -%}
    {{ raise_not_implemented("minute_sequence") }}
{%- endmacro %}

{% macro spark__minute_sequence(start, end) -%}
    sequence({{ start }}, {{ end }}, interval 1 minute)
{%- endmacro %}

{#- Every minute from the earliest to the latest `column` of the CTE `relation`, as
    `minute_start`; no rows while it is empty. The live marts left-join their per-minute figures
    onto it, so a quiet minute is a row of its own (a 0 on a chart) rather than a line drawn
    across the gap. -#}
{% macro minute_spine(relation, column='minute_start') -%}
    select {{ unnest(minute_sequence('first_minute', 'last_minute')) }} as minute_start
    from (
        select
            min({{ column }}) as first_minute,
            max({{ column }}) as last_minute
        from {{ relation }}
    ) as bounds
    where first_minute is not null
{%- endmacro %}
