{#- Engine-specific string SQL. -#}

{#- Group `group` of the first match of the regular expression `pattern` in `column`; null when
    there is no match. Write patterns without backslashes (use [(] for a literal parenthesis):
    engines disagree on how string literals treat them. -#}
{% macro regexp_group(column, pattern, group) -%}
    {{ return(adapter.dispatch("regexp_group")(column, pattern, group)) }}
{%- endmacro %}

{% macro default__regexp_group(column, pattern, group) -%}
    {{ raise_not_implemented("regexp_group") }}
{%- endmacro %}

{% macro spark__regexp_group(column, pattern, group) -%}
    {#- regexp_extract gives '' both when nothing matches and when the group is empty: the rlike
        test tells them apart, so no match is null. -#}
    case
        when {{ column }} rlike '{{ pattern }}'
            then regexp_extract({{ column }}, '{{ pattern }}', {{ group }})
    end
{%- endmacro %}
