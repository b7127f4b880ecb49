with

movies as (

    select * from {{ ref('stg_movielens__movies') }}

),

genre_names as (

    select * from {{ ref('lookup_genres') }}

),

unnested as (

    select
        movie_id,
        {{ unnest('genres') }} as source_genre

    from movies

),

canonicalized as (

    -- A genre missing from the seed keeps its source name (and fails the relationships test),
    -- so a new genre shows up instead of vanishing; the seed's "no genre" markers map to null.
    select
        unnested.movie_id,
        unnested.source_genre,
        case
            when genre_names.source_genre is null then unnested.source_genre
            else genre_names.genre
        end as genre

    from unnested
    left join genre_names
        on unnested.source_genre = genre_names.source_genre

),

movie_genres as (

    -- One row per movie and canonical genre ("Children's" and "Children" would be one).
    select
        movie_id,
        genre,
        min(source_genre) as source_genre

    from canonicalized
    where genre is not null
    group by
        movie_id,
        genre

)

select * from movie_genres
