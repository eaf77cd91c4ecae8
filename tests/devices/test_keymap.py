import pytest
from hypothesis import given, settings, strategies as st

from hv.devices.keymap import Key, parse_input, terminal_to_keys


def events(text):
    return [k.events for k in parse_input(text)]


def test_lowercase_letter_is_make_then_break():
    assert events("a") == [[b"\x1e", b"\x9e"]]


def test_capital_letter_is_wrapped_in_left_shift():
    assert events("A") == [[b"\x2a", b"\x1e", b"\x9e", b"\xaa"]]


def test_shifted_symbol_uses_shift_and_its_base_key():
    assert events("!") == [[b"\x2a", b"\x02", b"\x82", b"\xaa"]]


def test_digits_and_space_map_to_the_top_row_and_space_bar():
    assert [e[0] for e in events("10 ")] == [b"\x02", b"\x0b", b"\x39"]


def test_carriage_return_and_newline_are_enter():
    assert events("\r\n") == [[b"\x1c", b"\x9c"], [b"\x1c", b"\x9c"]]


def test_tab_and_backspace_escapes():
    assert events("\t\b") == [[b"\x0f", b"\x8f"], [b"\x0e", b"\x8e"]]


def test_named_keys_in_braces():
    assert events("{esc}{enter}{tab}{backspace}") == [
        [b"\x01", b"\x81"], [b"\x1c", b"\x9c"], [b"\x0f", b"\x8f"], [b"\x0e", b"\x8e"]]


def test_arrow_up_uses_the_e0_prefix():
    assert events("{up}") == [[b"\xe0\x48", b"\xe0\xc8"]]


@pytest.mark.parametrize("name,code", [
    ("left", 0x4B), ("right", 0x4D), ("down", 0x50), ("home", 0x47), ("end", 0x4F),
    ("pgup", 0x49), ("pgdn", 0x51), ("ins", 0x52), ("del", 0x53)])
def test_editing_keys_are_extended(name, code):
    assert events("{%s}" % name) == [[bytes([0xE0, code]), bytes([0xE0, code | 0x80])]]


@pytest.mark.parametrize("n,code", [(1, 0x3B), (10, 0x44), (11, 0x57), (12, 0x58)])
def test_function_keys(n, code):
    assert events("{f%d}" % n) == [[bytes([code]), bytes([code | 0x80])]]


def test_ctrl_combo_wraps_key_in_left_ctrl():
    assert events("{ctrl-c}") == [[b"\x1d", b"\x2e", b"\xae", b"\x9d"]]


def test_ctrl_combo_ignores_letter_case():
    assert events("{ctrl-C}") == events("{ctrl-c}")


def test_alt_combo_wraps_key_in_left_alt():
    assert events("{alt-x}") == [[b"\x38", b"\x2d", b"\xad", b"\xb8"]]


def test_ctrl_alt_del_presses_both_modifiers_and_releases_in_reverse():
    assert events("{ctrl-alt-del}") == [
        [b"\x1d", b"\x38", b"\xe0\x53", b"\xe0\xd3", b"\xb8", b"\x9d"]]


def test_double_braces_are_literal_braces():
    assert events("{{}}") == [[b"\x2a", b"\x1a", b"\x9a", b"\xaa"],
                              [b"\x2a", b"\x1b", b"\x9b", b"\xaa"]]


def test_names_are_case_insensitive():
    assert events("{ESC}") == events("{esc}")


def test_unknown_name_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="bogus") as exc:
        parse_input("ab{bogus}")
    assert "\n" not in str(exc.value)


def test_unterminated_brace_raises_value_error():
    with pytest.raises(ValueError):
        parse_input("{esc")


def test_lone_closing_brace_raises_value_error():
    with pytest.raises(ValueError):
        parse_input("a}b")


def test_non_ascii_character_raises_value_error():
    with pytest.raises(ValueError):
        parse_input("é")


def test_codes_concatenates_the_events():
    assert parse_input("A")[0].codes == b"\x2a\x1e\x9e\xaa"


def test_terminal_printable_bytes_type_themselves():
    assert [k.events for k in terminal_to_keys(b"aA")] == events("aA")


def test_terminal_control_byte_is_ctrl_letter():
    assert [k.events for k in terminal_to_keys(b"\x01")] == events("{ctrl-a}")


def test_terminal_carriage_return_and_del_are_enter_and_backspace():
    assert [k.events for k in terminal_to_keys(b"\r\x7f")] == events("{enter}{backspace}")


def test_terminal_csi_arrows():
    assert [k.events for k in terminal_to_keys(b"\x1b[A\x1b[B\x1b[C\x1b[D")] == \
        events("{up}{down}{right}{left}")


def test_terminal_ss3_function_keys():
    assert [k.events for k in terminal_to_keys(b"\x1bOP\x1bOS")] == events("{f1}{f4}")


def test_terminal_tilde_sequences():
    assert [k.events for k in terminal_to_keys(b"\x1b[3~\x1b[5~\x1b[24~")] == \
        events("{del}{pgup}{f12}")


def test_terminal_xterm_modifier_parameter():
    assert [k.events for k in terminal_to_keys(b"\x1b[1;5C")] == events("{ctrl-right}")


def test_terminal_lone_escape_is_esc():
    assert [k.events for k in terminal_to_keys(b"\x1b")] == events("{esc}")


def test_terminal_escape_then_letter_is_alt_letter():
    assert [k.events for k in terminal_to_keys(b"\x1bx")] == events("{alt-x}")


def test_terminal_unknown_sequence_and_utf8_are_dropped():
    assert [k.events for k in terminal_to_keys(b"\x1b[99~\xc3\xa9z")] == events("z")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_parse_input_returns_keys_or_raises_value_error(text):
    try:
        keys = parse_input(text)
    except ValueError as e:
        assert len(str(e).splitlines()) == 1
        return
    assert all(isinstance(k, Key) and k.events for k in keys)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}-abcXYZ!ctrlaltshiftupf1 \r\t")), max_size=30))
def test_parse_input_on_brace_heavy_text_returns_keys_or_raises_value_error(text):
    try:
        keys = parse_input(text)
    except ValueError as e:
        assert len(str(e).splitlines()) == 1            # a one-line message for the user
        assert "{" in text or "}" in text               # only a brace can make text invalid
        return
    assert all(isinstance(k, Key) and k.events for k in keys)
    plain = text.replace("{{", "").replace("}}", "")
    if "{" not in plain and "}" not in plain:
        assert len(keys) == len(text.replace("{{", "{").replace("}}", "}"))   # one key a character


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=40))
def test_terminal_to_keys_never_raises(data):
    for key in terminal_to_keys(data):
        assert all(isinstance(e, bytes) and e for e in key.events)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)
               .filter(lambda c: c not in "{}"), max_size=30))
def test_every_printable_ascii_character_has_balanced_make_and_break(text):
    for key in parse_input(text):
        makes = [e for e in key.events if not e[-1] & 0x80]
        breaks = [e for e in key.events if e[-1] & 0x80]
        assert sorted(m[-1] for m in makes) == sorted(b[-1] & 0x7F for b in breaks)
