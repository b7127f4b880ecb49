with

users as (

    select * from {{ ref('int_users_joined_to_lookups') }}

),

user_ratings as (

    select * from {{ ref('int_ratings_aggregated_to_users') }}

),

user_ids as (

    -- Every user: those in bronze.users (maybe without ratings) and those who rated (releases
    -- without a users file only know users through their ratings).
    select user_id from users
    union distinct
    select user_id from user_ratings

),

joined as (

    select
        -- No demographics here (minimisation): gold.audience_by_demographic has them, in cells
        -- of at least five users.
        user_ids.user_id,
        coalesce(user_ratings.rating_count, 0) as rating_count,
        user_ratings.rating_mean,
        user_ratings.first_rated_at,
        user_ratings.last_rated_at

    from user_ids
    left join user_ratings
        on user_ids.user_id = user_ratings.user_id

)

select * from joined
