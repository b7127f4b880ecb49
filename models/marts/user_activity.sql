with

users as (

    select * from {{ ref('users') }}

),

buckets as (

    select * from {{ ref('lookup_user_activity_buckets') }}

),

bucketed as (

    -- Every bucket, empty ones included, so the histogram has no holes.
    select
        buckets.bucket_order,
        buckets.bucket_label,
        buckets.min_ratings,
        buckets.max_ratings,
        count(users.user_id) as user_count

    from buckets
    left join users
        on users.rating_count >= buckets.min_ratings
        and (buckets.max_ratings is null or users.rating_count <= buckets.max_ratings)
    group by
        buckets.bucket_order,
        buckets.bucket_label,
        buckets.min_ratings,
        buckets.max_ratings

),

with_share as (

    select
        bucket_order,
        bucket_label,
        min_ratings,
        max_ratings,
        user_count,
        cast(user_count as double) / nullif(sum(user_count) over (), 0) as share

    from bucketed

)

select * from with_share
