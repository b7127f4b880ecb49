-- Heatmap cells of the most active users: readable axis labels that sort by activity.
with

cells as (

    select * from {{ ref('stg_ml__user_similarity_matrix') }}

),

final as (

    select
        user_id,
        other_user_id,
        -- "03 · 655": activity rank, then user id; short enough for the chart's axis.
        concat(lpad(cast(user_position as string), 2, '0'), ' · ', cast(user_id as string)) as user_label,
        concat(lpad(cast(other_user_position as string), 2, '0'), ' · ', cast(other_user_id as string)) as other_user_label,
        similarity

    from cells

)

select * from final
