with

ratings as (

    select * from {{ ref('int_ratings_unioned_with_stream') }}

),

final as (

    select
        user_id,
        movie_id,
        rating,
        rated_at,
        cast(rated_at as date) as rated_on,
        rating_source

    from ratings

)

select * from final
