{#- Each breakdown: its name and the profile columns it groups by (a label, and a sort key). -#}
{%- set breakdowns = [
    ('age band', [('age_band', 'age_band_order')]),
    ('gender', [('gender', 'gender')]),
    ('occupation', [('occupation', 'occupation')]),
    ('age band and gender', [('age_band', 'age_band_order'), ('gender', 'gender')]),
] -%}

with

demographics as (

    select * from {{ ref('int_users_joined_to_lookups') }}

),

users as (

    -- Every user with their activity, as gold.users has them (raters missing from bronze.users
    -- included: they count as "unknown").
    select * from {{ ref('users') }}

),

profiles as (

    select
        users.user_id,
        coalesce(demographics.age_band, 'unknown') as age_band,
        coalesce(demographics.age_band_order, 99) as age_band_order,
        coalesce(demographics.gender, 'unknown') as gender,
        coalesce(demographics.occupation, 'unknown') as occupation,
        users.rating_count,
        coalesce(users.rating_mean * users.rating_count, 0) as rating_sum

    from users
    left join demographics
        on users.user_id = demographics.user_id

),

cells as (

    {% for name, columns in breakdowns %}
    select
        '{{ name }}' as breakdown,
        concat_ws(' / ', {% for label, _ in columns %}{{ label }}{{ ", " if not loop.last }}{% endfor %}) as group_label,
        {{ loop.index }} as breakdown_order,
        -- Sort keys as text, zero-padded where numeric, so that one column orders every breakdown.
        concat_ws('/', {% for _, key in columns %}lpad(cast({{ key }} as string), 3, '0'){{ ", " if not loop.last }}{% endfor %}) as group_order,
        count(*) as user_count,
        sum(rating_count) as rating_count,
        sum(rating_sum) / nullif(sum(rating_count), 0) as rating_mean

    from profiles
    group by {% for label, key in columns %}{{ label }}, {{ key }}{{ ", " if not loop.last }}{% endfor %}
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

suppressed as (

    -- Statistical disclosure control: a cell of fewer than `min_cell_users` users keeps its label
    -- and says it is suppressed, but shows no figure that could describe those few people.
    select
        breakdown,
        group_label,
        breakdown_order,
        group_order,
        user_count < {{ var('min_cell_users') }} as is_suppressed,
        case when user_count >= {{ var('min_cell_users') }} then user_count end as user_count,
        case when user_count >= {{ var('min_cell_users') }} then rating_count end as rating_count,
        case when user_count >= {{ var('min_cell_users') }} then rating_mean end as rating_mean

    from cells

)

select * from suppressed
