{#- The periods end now: current_timestamp() is evaluated when the view is queried, which is why
    this mart is a view. A rating is in a period when the stream wrote it then (ingested_at): a
    replayed rating keeps its historical rated_at. -#}
{%- set periods = {'last_hour': 'hour', 'last_day': 'day'} -%}

with

rating_events as (

    select * from {{ ref('stg_stream__rating_events') }}

),

movies as (

    select * from {{ ref('movies') }}

),
{% for period, datepart in periods.items() %}
{{ period }}_counts as (

    select
        '{{ period }}' as period,
        {{ dbt.dateadd(datepart, -1, dbt.current_timestamp()) }} as period_start,
        movie_id,
        count(*) as rating_count,
        avg(rating) as rating_mean,
        max(ingested_at) as last_ingested_at

    from rating_events
    where ingested_at >= {{ dbt.dateadd(datepart, -1, dbt.current_timestamp()) }}
    group by movie_id

),
{% endfor %}
unioned as (

    {% for period in periods -%}
    {% if not loop.first %}union all
    {% endif -%}
    select * from {{ period }}_counts
    {% endfor %}
),

ranked as (

    -- Ties on the count go to the lower movie_id, so the ranks are 1..n without gaps.
    select
        period,
        period_start,
        row_number() over (
            partition by period
            order by
                rating_count desc,
                movie_id
        ) as rank,
        movie_id,
        rating_count,
        rating_mean,
        last_ingested_at

    from unioned

),

top_movies as (

    select * from ranked
    where rank <= {{ var('top_n') }}

),

joined as (

    select
        top_movies.period,
        top_movies.period_start,
        top_movies.rank,
        top_movies.movie_id,
        movies.title,
        movies.release_year,
        top_movies.rating_count,
        top_movies.rating_mean,
        top_movies.last_ingested_at

    from top_movies
    left join movies
        on top_movies.movie_id = movies.movie_id

)

select * from joined
