{% macro latest_wins_rank(partition_by, leading=[], line_order=['line_number']) -%}
    {#- The rank of a row among the rows of its key (`partition_by`), 1 for the one that wins: the
        greatest `leading` columns first (e.g. rated_at: the latest rating), then the latest
        ingestion, the latest load, the last line. Every staging model that deduplicates bronze
        uses this one rule. -#}
    row_number() over (
        partition by {{ partition_by | join(', ') }}
        order by
            {%- for column in leading + ['ingested_at', 'load_id'] + line_order %}
            {{ column }} desc{{ ',' if not loop.last }}
            {%- endfor %}
    )
{%- endmacro %}
