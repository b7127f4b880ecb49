with

communities as (

    select * from {{ ref('stg_ml__community_summary') }}

),

final as (

    select
        community_id,
        community_size,
        community_size / sum(community_size) over () as share_of_users,
        internal_edges,
        top_genres,
        modularity,
        algorithm

    from communities

)

select * from final
