-- A user is never recommended a movie they have already rated.
select
    recommendations.user_id,
    recommendations.movie_id

from {{ source('ml', 'recommendations') }} as recommendations
inner join {{ ref('ratings') }} as ratings
    on recommendations.user_id = ratings.user_id
    and recommendations.movie_id = ratings.movie_id
