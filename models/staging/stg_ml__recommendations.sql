with

source as (

    select * from {{ source('ml', 'recommendations') }}

),

renamed as (

    select
        user_id,
        movie_id,
        rank as recommendation_rank,
        score,
        model_name,
        model_version,
        run_id,
        generated_at,
        updated_at

    from source

)

select * from renamed
