-- The hyperparameters of each experiment's current champion, one row per parameter (the
-- "champion's parameters" table of the Model quality dashboard).
with

runs as (

    select * from {{ ref('stg_ml__model_runs') }}

),

champions as (

    select
        run_id,
        experiment,
        run_name,
        model_type,
        started_at,
        params,
        row_number() over (
            partition by experiment
            order by
                started_at desc,
                run_id
        ) as recency

    from runs
    where is_champion
        and run_status = 'FINISHED'

),

current_champions as (

    select * from champions
    where recency = 1

),

parameters as (

    select
        experiment,
        run_id,
        run_name,
        model_type,
        started_at,
        {{ unnest(map_keys('params')) }} as parameter,
        params

    from current_champions

),

final as (

    select
        experiment,
        run_id,
        run_name,
        model_type,
        started_at,
        parameter,
        params[parameter] as value

    from parameters

)

select * from final
