{#- Engine-specific array SQL: MovieLens genres are a list per movie. -#}

{#- Split `column` on a one-character `delimiter` into an array of strings; an empty or null
    string gives an empty array (not [""]). -#}
{% macro split_to_array(column, delimiter) -%}
    {{ return(adapter.dispatch("split_to_array")(column, delimiter)) }}
{%- endmacro %}

{% macro default__split_to_array(column, delimiter) -%}
    {{ raise_not_implemented("split_to_array") }}
{%- endmacro %}

{% macro spark__split_to_array(column, delimiter) -%}
    {#- split() takes a regular expression: a character class matches the delimiter literally. -#}
    case
        when coalesce({{ column }}, '') = '' then {{ empty_string_array() }}
        else split({{ column }}, '[{{ delimiter }}]')
    end
{%- endmacro %}


{#- An empty array of strings, typed, so it unions and coalesces with real arrays. -#}
{% macro empty_string_array() -%}
    {{ return(adapter.dispatch("empty_string_array")()) }}
{%- endmacro %}

{% macro default__empty_string_array() -%}
    {{ raise_not_implemented("empty_string_array") }}
{%- endmacro %}

{% macro spark__empty_string_array() -%}
    cast(array() as array<string>)
{%- endmacro %}


{#- One output row per element of an array column, used in a select list: `{{ unnest('genres') }} as genre`. -#}
{% macro unnest(column) -%}
    {{ return(adapter.dispatch("unnest")(column)) }}
{%- endmacro %}

{% macro default__unnest(column) -%}
    {{ raise_not_implemented("unnest") }}
{%- endmacro %}

{% macro spark__unnest(column) -%}
    explode({{ column }})
{%- endmacro %}


{#- Aggregate: the distinct values of `column` in a group as a sorted array (nulls left out). -#}
{% macro array_agg_distinct_sorted(column) -%}
    {{ return(adapter.dispatch("array_agg_distinct_sorted")(column)) }}
{%- endmacro %}

{% macro default__array_agg_distinct_sorted(column) -%}
    {{ raise_not_implemented("array_agg_distinct_sorted") }}
{%- endmacro %}

{% macro spark__array_agg_distinct_sorted(column) -%}
    sort_array(collect_set({{ column }}))
{%- endmacro %}
