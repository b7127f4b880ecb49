{#- Rows removed on purpose, for the tests that compare a ledger with the rows it counted. -#}

{#- A SQL timestamp: rows of `table_name` loaded before it may have been removed on purpose, by an
    erasure (governance.erasure_log: the last erasure that deleted rows of the table) or by the
    retention policy (governance.retention_log: the newest cutoff that removed rows of it);
    timestamp '0001-01-01' when neither did. The governance tables exist only once an erasure or
    housekeeping has run, so they are looked up, not declared (a source that is missing fails the
    whole test). -#}
{% macro removed_on_purpose_before(table_name) -%}
    {{ return(adapter.dispatch("removed_on_purpose_before")(table_name)) }}
{%- endmacro %}

{% macro default__removed_on_purpose_before(table_name) -%}
    {{ raise_not_implemented("removed_on_purpose_before") }}
{%- endmacro %}

{% macro spark__removed_on_purpose_before(table_name) -%}
    {%- set never = "timestamp '0001-01-01 00:00:00'" -%}
    {%- set parts = [] -%}
    {%- if execute -%}
        {%- set erasures = adapter.get_relation(database=none, schema="governance", identifier="erasure_log") -%}
        {%- set retention = adapter.get_relation(database=none, schema="governance", identifier="retention_log") -%}
        {%- if erasures is not none -%}
            {%- do parts.append("select max(finished_at) from " ~ erasures
                ~ " where array_contains(map_keys(tables), '" ~ table_name ~ "')") -%}
        {%- endif -%}
        {%- if retention is not none -%}
            {%- do parts.append("select max(cutoff) from " ~ retention
                ~ " where item = '" ~ table_name ~ "' and removed > 0") -%}
        {%- endif -%}
    {%- endif -%}
    {#- Spark's greatest() wants two arguments at least. -#}
    {%- if parts -%}
    greatest(
        {%- for part in parts %}coalesce(({{ part }}), {{ never }}), {% endfor -%}
        {{ never }}
    )
    {%- else -%}
    {{ never }}
    {%- endif -%}
{%- endmacro %}
