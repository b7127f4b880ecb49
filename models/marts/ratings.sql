with

ratings as (

    select * from {{ ref('stg_movielens__ratings') }}

),

final as (

    select
        user_id,
        movie_id,
        rating,
        rated_at,
        cast(rated_at as date) as rated_on

    from ratings

)

select * from final
