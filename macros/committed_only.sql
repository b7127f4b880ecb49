{% macro committed_only(rows, ledger) -%}
    {#- The rows of the CTE `rows` whose `load_id` has a row in the CTE `ledger`. A load is
        committed by its ledger row (bronze.ingest_log for the batch ingest, bronze.stream_batches
        for a micro-batch), written after its rows: rows of an ingest or batch that is running or
        died are left out, so every model downstream reads committed data only. -#}
    select {{ rows }}.*
    from {{ rows }}
    where exists (
        select 1
        from {{ ledger }}
        where {{ ledger }}.load_id = {{ rows }}.load_id
    )
{%- endmacro %}
