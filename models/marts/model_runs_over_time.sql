-- Finished MLflow runs, one row each, for the "RMSE over time" and model-comparison charts.
with

runs as (

    select * from {{ ref('stg_ml__model_runs') }}

),

final as (

    select
        run_id,
        parent_run_id,
        experiment,
        run_name,
        model_type,
        protocol,
        is_champion,
        parent_run_id is null as is_sweep,
        started_at,
        cast(started_at as date) as started_on,
        rmse,
        mae,
        precision_at_10,
        recall_at_10,
        ndcg_at_10,
        map_at_10,
        val_rmse,
        val_ndcg_at_10,
        input_rows,
        code_version

    from runs
    where run_status = 'FINISHED'

)

select * from final
