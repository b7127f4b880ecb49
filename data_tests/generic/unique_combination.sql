{#- The combination of `columns` is unique in the model: no key occurs twice. -#}
{% test unique_combination(model, columns) %}

with

key_counts as (

    select
        {% for column in columns -%}
        {{ column }},
        {% endfor -%}
        count(*) as occurrences

    from {{ model }}
    group by
        {% for column in columns -%}
        {{ column }}{% if not loop.last %},{% endif %}
        {% endfor %}

),

duplicated as (

    select * from key_counts
    where occurrences > 1

)

select * from duplicated

{% endtest %}
