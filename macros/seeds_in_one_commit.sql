{#- A seed is one Delta commit: `create or replace table ... as select ... from values`, instead of
    dbt-spark's drop, create and insert, between which a reader finds the table missing or empty
    (and the drop forgets its history). The seeds are small lookup tables, so their rows fit in
    one statement. These override dbt-spark's macros of the same names for this project. -#}

{% macro spark__reset_csv_table(model, full_refresh, old_relation, agate_table) %}
    {{ return(create_csv_table(model, agate_table)) }}
{% endmacro %}


{% macro spark__create_csv_table(model, agate_table) %}
    {%- set column_override = model['config'].get('column_types', {}) -%}
    {%- set quote_seed_column = model['config'].get('quote_columns', None) -%}
    {%- set width = agate_table.column_names | length -%}
    {%- set bindings = [] -%}
    {%- for row in agate_table.rows -%}
        {%- do bindings.extend(row) -%}
    {%- endfor -%}

    {% set sql %}
    create or replace table {{ this.render() }}
    {{ file_format_clause() }}
    {{ partition_cols(label="partitioned by") }}
    {{ clustered_cols(label="clustered by") }}
    {{ location_clause() }}
    {{ comment_clause() }}
    as select
        {%- for col_name in agate_table.column_names %}
        {%- set type = column_override.get(col_name, adapter.convert_type(agate_table, loop.index0)) %}
        cast(seed_column_{{ loop.index }} as {{ type }}) as {{ adapter.quote_seed_column(col_name | string, quote_seed_column) }}
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
    from values
        {%- if agate_table.rows | length == 0 %}
        ({% for _ in range(width) %}null{% if not loop.last %}, {% endif %}{% endfor %})
        {%- else %}
        {%- for row in agate_table.rows %}
        ({% for _ in range(width) %}{{ get_binding_char() }}{% if not loop.last %}, {% endif %}{% endfor %})
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
        {%- endif %}
        as seed_rows({% for _ in range(width) %}seed_column_{{ loop.index }}{% if not loop.last %}, {% endif %}{% endfor %})
    {%- if agate_table.rows | length == 0 %}
    where false
    {%- endif %}
    {% endset %}

    {% do adapter.add_query(sql, bindings=bindings, abridge_sql_log=True) %}
    {{ return(sql) }}
{% endmacro %}


{% macro spark__load_csv_rows(model, agate_table) %}
    {#- The rows went in with the table, in the same commit. -#}
    {{ return('') }}
{% endmacro %}
