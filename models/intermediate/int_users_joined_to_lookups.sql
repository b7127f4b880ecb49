with

users as (

    select * from {{ ref('stg_movielens__users') }}

),

age_bands as (

    select * from {{ ref('lookup_age_bands') }}

),

occupations as (

    select * from {{ ref('lookup_occupations') }}

),

joined as (

    -- ml-1m's age code is its band's lower bound and ml-100k's age a real age: both fall
    -- between a band's bounds.
    select
        users.user_id,
        users.gender,
        users.age,
        age_bands.age_band,
        age_bands.band_order as age_band_order,
        users.occupation as source_occupation,
        occupations.occupation

    from users
    left join age_bands
        on users.age >= age_bands.min_age
        and (age_bands.max_age is null or users.age <= age_bands.max_age)
    left join occupations
        on users.occupation = occupations.source_occupation

)

select * from joined
