{#- None of `columns` holds a null, checked in one scan: a failing row names a column and its null rows. -#}
{% test not_null_columns(model, columns) %}

with

null_counts as (

    select
        {%- for column in columns %}
        count_if({{ column }} is null) as {{ column }}_null_rows{% if not loop.last %},{% endif %}
        {%- endfor %}

    from {{ model }}

),

per_column as (

    select
        stack(
            {{ columns | length }},
            {%- for column in columns %}
            '{{ column }}', {{ column }}_null_rows{% if not loop.last %},{% endif %}
            {%- endfor %}
        ) as (column_name, null_rows)

    from null_counts

),

with_nulls as (

    select * from per_column
    where null_rows > 0

)

select * from with_nulls

{% endtest %}
