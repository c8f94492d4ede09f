"""Tests for adapters.email.html_text: HTML mail bodies rendered as readable text."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.email.html_text import html_to_text


def test_script_style_head_and_title_contents_are_dropped() -> None:
    html = (
        "<html><head><title>Title</title><meta charset=utf-8>"
        "<style>body { color: red }</style></head>"
        "<body><script>alert('<p>x</p>')</script>visible<noscript>!</noscript></body></html>"
    )
    assert html_to_text(html) == "visible!"


def test_unclosed_head_does_not_hide_the_body() -> None:
    assert html_to_text("<html><head><title>t</title><body>body text") == "body text"


def test_hidden_elements_are_dropped() -> None:
    html = (
        '<div style="display: none !important">preheader</div>'
        '<span style="DISPLAY:NONE">x</span><p hidden>gone</p>'
        '<div style="visibility:hidden">also gone</div><p>shown</p>'
    )
    assert html_to_text(html) == "shown"


def test_hidden_paragraph_without_end_tag_does_not_hide_the_next_one() -> None:
    assert html_to_text("<p style='display:none'>hidden<p>shown") == "shown"


def test_block_elements_become_line_breaks() -> None:
    html = "<h1>Title</h1><p>one<br>two</p><div>three</div><div>four</div><p>five</p>"
    assert html_to_text(html) == "Title\n\none\ntwo\n\nthree\nfour\n\nfive"


def test_list_items_are_prefixed_and_nested_lists_indented() -> None:
    html = "<ul><li>one</li><li>two<ul><li>inner</li></ul></li><li>three</ul><ol><li>x</ol>"
    assert html_to_text(html) == "- one\n- two\n  - inner\n- three\n- x"


def test_table_rows_are_lines_and_cells_are_spaced() -> None:
    html = "<table><tr><td>a</td><td>b</td></tr><tr><th>c</th><td>d</td></tr></table>"
    assert html_to_text(html) == "a b\nc d"


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ('<a href="https://example.org/x">the docs</a>', "the docs (https://example.org/x)"),
        ('<a href="https://example.org/">example.org</a>', "example.org"),
        ('<a href="https://example.org">https://example.org</a>', "https://example.org"),
        ('<a href="mailto:help@desk.example">help@desk.example</a>', "help@desk.example"),
        ('<a href="mailto:help@desk.example">write us</a>', "write us (mailto:help@desk.example)"),
        ('<a href="javascript:alert(1)">click</a>', "click"),
        ('<a href="#top">top</a>', "top"),
        ('<a href="https://x.example/"><img src="logo.png"></a>', ""),
        ('<a href="https://a.example/\n  path">x</a>', "x (https://a.example/path)"),
    ],
)
def test_links_show_their_target_when_it_differs_from_the_text(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_images_and_tracking_pixels_are_dropped() -> None:
    html = '<p>Hi<img src="https://t.example/open.gif" width="1" height="1" alt="pixel"></p>'
    assert html_to_text(html) == "Hi"


def test_entities_are_unescaped() -> None:
    assert html_to_text("caf&eacute; &amp; cr&#232;me &lt;b&gt; &#x1F600; &nbsp;x") == (
        "café & crème <b> 😀 x"
    )


def test_whitespace_is_collapsed_and_blank_lines_are_limited() -> None:
    html = "  lots   of\n\n  space\t here  " + "<br>" * 10 + "end<p></p><p></p><p>again</p>"
    assert html_to_text(html) == "lots of space here\n\n\nend\n\nagain"


def test_preformatted_text_keeps_its_layout() -> None:
    assert (
        html_to_text("<p>code:</p><pre>  if x:\n      y()</pre>") == "code:\n\n  if x:\n      y()"
    )


def test_blockquotes_are_prefixed_like_quoted_mail() -> None:
    html = "<p>My answer</p><blockquote>your question<br>second line<p>para</p></blockquote>"
    assert html_to_text(html) == "My answer\n\n> your question\n> second line\n>\n> para"


def test_comments_and_conditional_comments_are_dropped() -> None:
    html = "a<!-- secret --><!--[if mso]>outlook only<![endif]-->b<![if !mso]>c<![endif]>"
    assert html_to_text(html) == "abc"


def test_stray_angle_brackets_are_kept_as_text() -> None:
    assert html_to_text("1 < 2 and 3 > 2, <3 <<") == "1 < 2 and 3 > 2, <3 <<"


def test_invisible_padding_characters_are_removed() -> None:
    assert html_to_text("Hello\u200b\u034f\u00ad\ufeff world") == "Hello world"


def test_malformed_markup_that_breaks_html_parser_is_handled() -> None:
    # The stdlib parser raises AssertionError on "<![" followed by a newline.
    assert html_to_text("before <![\n after") == "before <![ after"
    assert html_to_text("<a href='unterminated>text") == "<a href='unterminated>text"


@pytest.mark.parametrize("unit", ["<a ", "<a b=c ", "<a '", "<!--", "<![CDATA[ >", "<", "<div>"])
def test_pathological_markup_is_converted_in_linear_time(unit: str) -> None:
    html = unit * (100_000 // len(unit))
    started = time.monotonic()
    html_to_text(html)
    assert time.monotonic() - started < 2


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=500))
def test_html_to_text_never_raises_and_limits_blank_lines(html: str) -> None:
    text = html_to_text(html)
    assert "\r" not in text
    assert "\n\n\n\n" not in text
    assert text == text.strip("\n")
    assert all(line == line.rstrip() for line in text.split("\n"))


MARKUP = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "<p>",
                "</p>",
                "<div style='display:none'>",
                "</div>",
                "<br>",
                "<li>",
                "<ul>",
                "</ul>",
                "<a href='https://x.example'>",
                "</a>",
                "<script>",
                "</script>",
                "<pre>",
                "</pre>",
                "<blockquote>",
                "</blockquote>",
                "<!--",
                "-->",
                "<![CDATA[",
                "]]>",
                "&amp;",
                "&#0;",
                "<td>",
                "<",
                ">",
                "'",
                '"',
            ]
        ),
        st.text(max_size=10),
    ),
    max_size=40,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(MARKUP)
def test_html_to_text_never_raises_on_tag_soup(html: str) -> None:
    text = html_to_text(html)
    assert "\r" not in text
    assert "\x00" not in text
    assert "\n\n\n\n" not in text
