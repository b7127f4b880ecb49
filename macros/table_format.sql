{#-
    The table format of every table dbt writes, in one place.

    The lakehouse server resolves the format once at start-up (Delta Lake when its jars can be
    had, Parquet otherwise; see lakehouse/table_format.py) and publishes it as the Spark conf
    `spark.lakehouse.tableFormat`. dbt must write the same format as the Python writers, with no
    flag to keep in step, so the format is read from the server when a table is created.

    Why overrides and not `+file_format` in dbt_project.yml: configs are fixed at parse time, when
    dbt has no connection, so a config cannot ask the server. Of the places dbt-spark 1.11 reads
    `file_format`, two decide the format a SQL model or seed is written in, and this file
    overrides both to fall back to the server's format when the model sets none:
      - `spark__file_format_clause()` renders `using <format>` in `create table` for tables, seeds
        and the first build of incremental models;
      - `dbt_spark_validate_get_file_format()` gives incremental models their format, which
        decides whether `merge` is allowed and whether Delta's in-place paths apply.
    A model that sets `file_format` itself still gets exactly that format. (Python models would
    need the same care: dbt-spark writes them as `config.get('file_format', 'delta')`.)

    One consequence, accepted on purpose: dbt-spark's table materialization only takes its Delta
    path (`create or replace table`, keeping the table's Delta log and history) when the model's
    config says `file_format: delta`. With the format resolved at run time it drops the old table
    and creates the new one instead: correct for both formats (and what Parquet needs anyway),
    merely not atomic on Delta. Winning that back would take a copy of the whole materialization.

    The value is read with `set spark.lakehouse.tableFormat` on dbt's own session, once per
    table created (a millisecond query next to the table's build).
-#}

{% macro lakehouse_table_format() %}
    {#- The format the lakehouse server resolved ("delta" or "parquet"). -#}
    {%- if not execute -%}
        {#- Parsing and compiling have no connection; nothing is created then. -#}
        {{ return(none) }}
    {%- endif -%}
    {%- set answer = run_query("set spark.lakehouse.tableFormat") -%}
    {%- set value = (answer.rows[0][1] if answer and answer.rows | length > 0 else "") | string | trim | lower -%}
    {%- if value in ("delta", "parquet") -%}
        {{ return(value) }}
    {%- endif -%}
    {%- do exceptions.warn(
        "The Spark server does not publish spark.lakehouse.tableFormat (got '" ~ value ~ "'): "
        ~ "is it the lakehouse server? Writing parquet."
    ) -%}
    {{ return("parquet") }}
{% endmacro %}


{% macro resolved_file_format() %}
    {#- The model's own `file_format` when it sets one, else the server's format. -#}
    {{ return(config.get("file_format") or lakehouse_table_format()) }}
{% endmacro %}


{#- Overrides dbt-spark's clause (dispatched; the root project's macro wins). -#}
{% macro spark__file_format_clause() %}
    {%- set file_format = resolved_file_format() -%}
    {%- if file_format is not none %}
    using {{ file_format }}
    {%- endif %}
{%- endmacro %}


{#- Overrides dbt-spark's macro of the same name (root project macros come first). -#}
{% macro dbt_spark_validate_get_file_format(raw_file_format) %}
    {#- raw_file_format is dbt-spark's `config.get('file_format', default='parquet')`: the default
        hides whether the model chose parquet, so ask the config again. -#}
    {%- set file_format = resolved_file_format() -%}
    {%- set supported = ["text", "csv", "json", "jdbc", "parquet", "orc", "hive", "delta", "iceberg", "libsvm", "hudi"] -%}
    {%- if file_format not in supported -%}
        {%- do exceptions.raise_compiler_error(
            "file_format '" ~ file_format ~ "' is not one of: " ~ supported | join(", ")
        ) -%}
    {%- endif -%}
    {{ return(file_format) }}
{% endmacro %}
