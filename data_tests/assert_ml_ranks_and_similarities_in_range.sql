-- Ranks start at 1 and stay within the list length; similarities are cosines; no self-edges.
select 'recommendations' as source_table, user_id as id
from {{ source('ml', 'recommendations') }}
where rank < 1 or rank > {{ var('top_n') }}

union all

select 'similar_movies', movie_id
from {{ source('ml', 'similar_movies') }}
where rank < 1 or similarity < -1.0001 or similarity > 1.0001 or movie_id = similar_movie_id

union all

select 'user_similarity', user_id
from {{ source('ml', 'user_similarity') }}
where rank < 1 or similarity < -1.0001 or similarity > 1.0001 or user_id = neighbour_id

union all

select 'predictions', user_id
from {{ source('ml', 'predictions') }}
where prediction < {{ var('rating_scale_min') }} or prediction > {{ var('rating_scale_max') }}
