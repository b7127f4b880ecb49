with

source as (

    select * from {{ source('ml', 'model_runs') }}

),

renamed as (

    select
        run_id,
        parent_run_id,
        experiment,
        run_name,
        model_type,
        protocol,
        status as run_status,
        is_champion,
        started_at,
        ended_at,
        rmse,
        mae,
        precision_at_10,
        recall_at_10,
        ndcg_at_10,
        map_at_10,
        val_rmse,
        val_ndcg_at_10,
        input_rows,
        input_fingerprint,
        code_version,
        params

    from source

)

select * from renamed
