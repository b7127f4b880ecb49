{#- Shared by the engine-specific macros: the error for an adapter without an implementation. -#}
{% macro raise_not_implemented(macro_name) %}
    {%- do exceptions.raise_compiler_error(
        macro_name ~ " has no implementation for the '" ~ adapter.type() ~ "' adapter: add "
        ~ adapter.type() ~ "__" ~ macro_name ~ " beside spark__" ~ macro_name ~ " in macros/."
    ) -%}
{% endmacro %}
