with

source as (

    select * from {{ source('ml', 'user_similarity_matrix') }}

),

renamed as (

    select
        user_id,
        other_user_id,
        similarity,
        user_position,
        other_user_position

    from source

)

select * from renamed
