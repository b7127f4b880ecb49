{#- Time buckets are computed here because the dashboards cannot bucket reliably on Spark
    (Superset's Hive engine spec gets week grains wrong). Weeks start on Monday. -#}
{%- set grains = ['day', 'week', 'month'] -%}

with

ratings as (

    select * from {{ ref('ratings') }}

),

periods as (

    select
        rating,
        {%- for grain in grains %}
        cast({{ dbt.date_trunc(grain, 'rated_at') }} as date) as {{ grain }}_start
        {%- if not loop.last %},{% endif %}
        {%- endfor %}

    from ratings

),
{% for grain in grains %}
{{ grain }}_volume as (

    select
        '{{ grain }}' as grain,
        {{ grain }}_start as period_start,
        count(*) as rating_count,
        avg(rating) as rating_mean

    from periods
    group by {{ grain }}_start

),
{% endfor %}
unioned as (

    {% for grain in grains -%}
    {% if not loop.first %}union all
    {% endif -%}
    select * from {{ grain }}_volume
    {% endfor %}
),

with_cumulative as (

    select
        grain,
        period_start,
        rating_count,
        rating_mean,
        sum(rating_count) over (
            partition by grain
            order by period_start
            rows between unbounded preceding and current row
        ) as cumulative_rating_count

    from unioned

)

select * from with_cumulative
