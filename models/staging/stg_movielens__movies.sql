{#- "Toy Story (1995)": the title, optional spaces, then the year in parentheses, at the end. -#}
{%- set title_year_pattern = '^(.*?) *[(]([0-9]{4})[)]$' -%}

with

source as (

    select * from {{ source('movielens', 'movies') }}

),

ingest_log as (

    select * from {{ source('movielens', 'ingest_log') }}

),

committed as (

    {{ committed_only('source', 'ingest_log') }}

),

renamed as (

    select
        -- ids
        cast(movie_id as int) as movie_id,

        -- strings
        trim(title) as title_with_year,
        nullif(trim(genres), '(no genres listed)') as genres_text,
        imdb_url,

        -- lineage
        ingested_at,
        load_id,
        source_file,
        line_number

    from committed

),

title_split as (

    select
        *,
        {{ regexp_group('title_with_year', title_year_pattern, 1) }} as title_without_year,
        {{ regexp_group('title_with_year', title_year_pattern, 2) }} as release_year_text

    from renamed

),

cleaned as (

    select
        -- ids
        movie_id,

        -- strings
        coalesce(nullif(title_without_year, ''), title_with_year) as title,
        {{ split_to_array('genres_text', '|') }} as genres,
        imdb_url,

        -- numerics
        cast(release_year_text as int) as release_year,

        -- lineage
        ingested_at,
        load_id,
        source_file,
        line_number

    from title_split

),

ranked as (

    -- A movie may be in several loads: the latest load wins, then the last line.
    select
        *,
        {{ latest_wins_rank(['movie_id']) }} as recency_rank

    from cleaned

),

deduplicated as (

    select
        movie_id,
        title,
        release_year,
        genres,
        imdb_url,
        ingested_at,
        load_id,
        source_file,
        line_number

    from ranked
    where recency_rank = 1

)

select * from deduplicated
