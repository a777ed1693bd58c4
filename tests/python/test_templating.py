"""The template sandbox: what a template may do, what it may not reach, and the bounds that keep
an operator's template from stopping a server (escape attempts and runaway templates fail with
the template's line, never a Python error)."""

from __future__ import annotations

import pytest

from sztp.templating import MAX_TEXT, TemplateError, compile_template

NAME = "<profile p configuration>"


def render(source: str, **variables: object) -> str:
    return compile_template(source, NAME).render(variables)


def refusal(source: str, **variables: object) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        render(source, **variables)
    return caught.value


def test_a_configuration_template_renders_from_plain_data() -> None:
    source = (
        "hostname {{ vars.hostname }}\n"
        "{% for port in vars.ports %}interface {{ port.name }}\n"
        "  mtu {{ port.mtu | default(1500) }}\n"
        "{% endfor %}"
        "{% if site is defined %}location {{ site | upper }}\n{% endif %}"
        "{% for key, value in vars.extra | dictsort %}{{ key }}={{ value }};{% endfor %}\n"
        "{{ vars.ports | map(attribute='name') | join(',') }} {{ vars.extra | tojson }}\n"
    )
    variables = {
        "hostname": "dpu-1",
        "ports": [{"name": "p0", "mtu": 9000}, {"name": "p1"}],
        "extra": {"b": 2, "a": "x"},
    }
    assert render(source, vars=variables, site="fra1") == (
        "hostname dpu-1\n"
        "interface p0\n  mtu 9000\n"
        "interface p1\n  mtu 1500\n"
        "location FRA1\n"
        "a=x;b=2;\n"
        'p0,p1 {"a": "x", "b": 2}\n'
    )


def test_the_same_variables_render_the_same_text() -> None:
    template = compile_template("{{ vars | tojson }} {{ vars.l | unique | list }}", NAME)
    variables = {"vars": {"z": 1, "a": [3, 1, 3], "l": [3, 1, 3]}}
    assert template.render(variables) == template.render(dict(variables))


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ vars.__class__ }}",
        "{{ vars.items() }}",
        "{{ 'abc'.upper() }}",
        "{{ '{0.__class__}'.format(1) }}",
        "{{ self.__init__.__globals__ }}",
        "{{ namespace.__init__ }}",
        "{{ range.__self__ }}",
        "{% for x in range(1) %}{{ loop.__class__ }}{% endfor %}",
        "{{ vars | attr('__class__') }}",
    ],
)
def test_no_attribute_or_method_of_any_python_object_is_reachable(source: str) -> None:
    problem = refusal(source, vars={})
    assert problem.line == 1
    assert "__" not in str(render("{{ vars }}", vars={}))


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{% include 'x' %}", "include is not allowed"),
        ("{% import 'x' as x %}", "import is not allowed"),
        ("{% from 'x' import y %}", "import is not allowed"),
        ("{% extends 'x' %}", "extends is not allowed"),
        ("{% macro f() %}{% endmacro %}", "macros are not allowed"),
        ("{% call range(1) %}{% endcall %}", "call blocks are not allowed"),
        ("{% set x %}a{% endset %}", "blocks are not allowed"),
        ("{% filter upper %}a{% endfilter %}", "blocks are not allowed"),
        ("{% for x in [1] recursive %}{% endfor %}", "recursive loops are not allowed"),
        ("{% block b %}{% endblock %}", "blocks are not allowed"),
    ],
)
def test_constructs_that_read_files_or_run_without_bound_are_refused_at_compile_time(
    source: str, reason: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(f"first line\n{source}", NAME)
    assert caught.value.line == 2
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ 'x' * 10 ** 7 }}", "* would make more than"),
        ("{{ [1] * 10 ** 6 }}", "* would make more than"),
        ("{{ 2 ** 100000 }}", "** would make a number of more than"),
        ("{% set a = 'x' * 600000 %}{{ a ~ a }}", "~ would make more than"),
        ("{% set a = 'x' * 600000 %}{{ a + a }}", "+ would make more than"),
        ("{{ range(10 ** 6) | list }}", "range of more than"),
        (
            "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
            "loops run more than",
        ),
        (
            "{% set n = namespace(s='ab') %}{% for i in range(64) %}"
            "{% set n.s = n.s ~ n.s %}{% endfor %}",
            "~ would make more than",
        ),
        ("{{ ('x' * 1000) | replace('x', 'y' * 2000) }}", "replace would make more than"),
        ("{% set a = 'x' * 900000 %}{{ [a, a] | join }}", "join would make more than"),
        ("{% set a = 'x' * 900000 %}{{ [a, a] | tojson }}", "tojson would make more than"),
        ("{% set a = 'x' * 900000 %}{{ [a, a] }}", "an expression would make more than"),
        ("{{ '%0999999999d' % 1 }}", "% formatting is not allowed"),
        ("{{ [[1]] | sum(start=[]) }}", "sum adds numbers only"),
    ],
)
def test_runaway_templates_end_with_a_refusal_not_a_stuck_server(source: str, reason: str) -> None:
    problem = refusal(source)
    assert reason in str(problem)
    assert problem.line == 1


def test_output_is_bounded_as_a_whole_and_renders_up_to_the_bound() -> None:
    problem = refusal("{% for i in range(20) %}{{ 'x' * 100000 }}{% endfor %}")
    assert str(problem) == f"renders more than {MAX_TEXT} characters"
    assert len(render("{{ 'x' * size }}", size=MAX_TEXT)) == MAX_TEXT


@pytest.mark.parametrize(
    ("source", "line", "reason"),
    [
        ("a\nb\n{{ vars.hostname }}\n", 3, "'hostname' is undefined"),
        ("a\n{{ missing }}", 2, "'missing' is undefined"),
        ("a\nb\nc\n{{ 1 // 0 }}", 4, "by zero"),
        ("{{ lipsum(5) }}", 1, "'lipsum' is undefined"),
        ("{{ vars.l[5] + 1 }}", 1, "[5] is out of range"),
        ("{{ 'x' | center(10 ** 9) }}", 1, "No filter named 'center'"),
    ],
)
def test_errors_name_the_template_line(source: str, line: int, reason: str) -> None:
    try:
        problem = refusal(source, vars={"l": [1]})
    except TemplateError as exc:  # a filter unknown at compile time is refused there
        problem = exc
    assert problem.line == line, problem
    assert reason in str(problem)
    assert str(problem).startswith(f"line {line}: ")


def test_a_syntax_error_is_refused_with_its_line() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template("ok\n{% if %}\n", NAME)
    assert caught.value.line == 2


def test_undefined_facts_can_be_tested_and_defaulted() -> None:
    source = "{{ model | default('unknown') }} {{ 'site' if site is defined else 'no site' }}"
    assert render(source) == "unknown no site"


def test_a_configuration_keeps_its_last_newline_and_its_literal_text() -> None:
    text = 'line with $(touch x) and `x` and <xml attr="1"/>\n'
    assert render(text) == text
    assert render("{{ vars.value }}", vars={"value": "{{ not rendered again }}"}) == (
        "{{ not rendered again }}"
    )
    assert render("{{ vars.v | e }}", vars={"v": "<a & b>"}) == "&lt;a &amp; b&gt;"
