-- Every rating lies on the MovieLens scale: within [rating_scale_min, rating_scale_max] and a
-- whole number of rating_scale_step steps (half stars). Returns the ratings that do not.

with

ratings as (

    select * from {{ ref('ratings') }}

),

off_scale as (

    select
        user_id,
        movie_id,
        rating

    from ratings
    where rating < {{ var('rating_scale_min') }}
        or rating > {{ var('rating_scale_max') }}
        or rating / {{ var('rating_scale_step') }} <> round(rating / {{ var('rating_scale_step') }})

)

select * from off_scale
