{#-
    Schemas are the lakehouse layers (bronze, silver, gold, ml, governance), shared by every
    client: use a folder's `+schema` as it is, not dbt's default `<target schema>_<custom>`.
    Without a custom schema a node goes to the target's schema (silver).
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
