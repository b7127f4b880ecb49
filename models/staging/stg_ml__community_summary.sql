with

source as (

    select * from {{ source('ml', 'community_summary') }}

),

renamed as (

    select
        community_id,
        size as community_size,
        internal_edges,
        top_genres,
        modularity,
        algorithm,
        run_id

    from source

)

select * from renamed
