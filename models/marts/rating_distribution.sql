with

ratings as (

    select * from {{ ref('ratings') }}

),

rating_counts as (

    select
        rating,
        count(*) as rating_count

    from ratings
    group by rating

),

with_share as (

    select
        rating,
        rating_count,
        cast(rating_count as double) / sum(rating_count) over () as share

    from rating_counts

)

select * from with_share
