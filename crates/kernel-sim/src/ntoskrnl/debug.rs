//! `DbgPrint` and `DbgPrintEx`: what the driver prints is formatted as the kernel debugger
//! would show it and captured in the report ([`Report::debug_output`](crate::Report)), with
//! the entry point that printed it.
//!
//! Both are variadic. On x64 a variadic call passes its arguments as a fixed one does (the
//! first four in RCX, RDX, R8, R9, the rest on the stack above the caller's 32-byte home area),
//! and the callee owns the home area: a small assembly entry stores the four registers there,
//! which makes the arguments one contiguous array of 8-byte slots (what `va_list` is on x64),
//! and hands its address to the Rust body. Only as many slots are read as the format string
//! asks for.
//!
//! Rules, from the reference pages
//! (<https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-dbgprint>,
//! <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-dbgprintex>): callable
//! at IRQL <= DIRQL (kernel-sim has no device IRQLs: any); the Unicode format codes (`%C`,
//! `%S`, `%lc`, `%ls`, `%wc`, `%ws`, `%wZ`) only at PASSIVE_LEVEL; no floating-point codes
//! (`%f`, `%e`, `%E`, `%g`, `%G`, `%a`, `%A`); one call transmits at most 512 bytes; the return
//! value is `STATUS_SUCCESS`. `DbgPrintEx`'s component filter mask is not modelled: every line
//! is captured, with its component and level, whatever the mask would have let through.

use vigil_sys::{PASSIVE_LEVEL, STATUS_SUCCESS, UNICODE_STRING};

use crate::kernel::{Kernel, emulate, lock};
use crate::machine::{guest, state};
use crate::ntoskrnl::exports::Routine;
use crate::report::{DebugPrint, ViolationKind};

/// What one call transmits at most ("any single call ... will only transmit 512 bytes").
const MAX_TRANSMITTED: usize = 512;
/// Lines kept per run; later ones are counted in `Report::debug_output_dropped`.
pub(crate) const MAX_LINES: usize = 10_000;
/// The longest string argument read (the line is cut at 512 bytes anyway).
const MAX_STRING: usize = 1024;

std::arch::global_asm!(
    // DbgPrint(Format, ...) and DbgPrintEx(ComponentId, Level, Format, ...): store the register
    // arguments in the caller-provided home area, so that every argument is one slot of an
    // array starting at [rsp+8] on entry, and call the body with its address (RSP is 8 mod 16
    // on entry, so 40 bytes keep the call aligned and give the body its own home area).
    ".globl kvsim_dbg_print",
    ".type kvsim_dbg_print,@function",
    "kvsim_dbg_print:",
    "mov [rsp+8], rcx",
    "mov [rsp+16], rdx",
    "mov [rsp+24], r8",
    "mov [rsp+32], r9",
    "sub rsp, 40",
    "lea rcx, [rsp+48]",
    "call {dbg_print}",
    "add rsp, 40",
    "ret",
    ".size kvsim_dbg_print, . - kvsim_dbg_print",
    ".globl kvsim_dbg_print_ex",
    ".type kvsim_dbg_print_ex,@function",
    "kvsim_dbg_print_ex:",
    "mov [rsp+8], rcx",
    "mov [rsp+16], rdx",
    "mov [rsp+24], r8",
    "mov [rsp+32], r9",
    "sub rsp, 40",
    "lea rcx, [rsp+48]",
    "call {dbg_print_ex}",
    "add rsp, 40",
    "ret",
    ".size kvsim_dbg_print_ex, . - kvsim_dbg_print_ex",
    dbg_print = sym dbg_print_args,
    dbg_print_ex = sym dbg_print_ex_args,
);

unsafe extern "win64" {
    /// `ULONG DbgPrint(PCSTR Format, ...)`: the export the loader binds.
    pub(crate) fn kvsim_dbg_print();
    /// `ULONG DbgPrintEx(ULONG ComponentId, ULONG Level, PCSTR Format, ...)`.
    pub(crate) fn kvsim_dbg_print_ex();
}

/// The body of `DbgPrint`: `args` is the argument array (Format, then the values).
extern "win64" fn dbg_print_args(args: *const u64) -> u32 {
    emulate(Routine::DbgPrint, |k| {
        let mut list = ArgList { next: args };
        let format = list.next() as *const u8;
        capture(k, "DbgPrint", None, format, &mut list);
        STATUS_SUCCESS.cast_unsigned()
    })
}

/// The body of `DbgPrintEx`: `args` is `ComponentId`, `Level`, `Format`, then the values.
extern "win64" fn dbg_print_ex_args(args: *const u64) -> u32 {
    emulate(Routine::DbgPrintEx, |k| {
        let mut list = ArgList { next: args };
        // ULONG arguments: the low 32 bits of their slots.
        #[expect(clippy::cast_possible_truncation, reason = "ULONG parameters")]
        let component = list.next() as u32;
        #[expect(clippy::cast_possible_truncation, reason = "ULONG parameters")]
        let level = list.next() as u32;
        let format = list.next() as *const u8;
        capture(k, "DbgPrintEx", Some((component, level)), format, &mut list);
        STATUS_SUCCESS.cast_unsigned()
    })
}

/// The variadic arguments: 8-byte slots read in order from the driver's stack.
struct ArgList {
    next: *const u64,
}

impl ArgList {
    fn next(&mut self) -> u64 {
        let value = guest::read(self.next);
        self.next = self.next.wrapping_add(1);
        value
    }
}

fn capture(
    k: &Kernel,
    routine: &str,
    component: Option<(u32, u32)>,
    format: *const u8,
    args: &mut ArgList,
) {
    if format.is_null() {
        k.parameter_violation("a Format string", "Format is NULL".to_owned());
        return;
    }
    let format = read_c_string(format);
    let formatted = format_message(&format, args);
    let irql = state::current_irql();
    if let Some(code) = &formatted.unicode_code
        && irql > PASSIVE_LEVEL
    {
        k.violation(
            ViolationKind::Irql,
            format!("{routine}: Unicode format codes (%C, %S, %lc, %ls, %wc, %ws, %wZ) only at PASSIVE_LEVEL"),
            format!("{code} at IRQL {irql} in {:?}", String::from_utf8_lossy(&format)),
        );
    }
    if let Some(code) = &formatted.floating_point {
        k.parameter_violation(
            "no floating-point format codes (%f, %e, %E, %g, %G, %a, %A)",
            format!("{code} in {:?}", String::from_utf8_lossy(&format)),
        );
    }
    let mut text = formatted.text;
    if text.len() > MAX_TRANSMITTED {
        text.truncate(MAX_TRANSMITTED);
    }
    let line = DebugPrint {
        routine: routine.to_owned(),
        component: component.map(|(c, _)| c),
        level: component.map(|(_, l)| l),
        callback: state::with(|s| s.callback.get()).to_owned(),
        text: String::from_utf8_lossy(&text).into_owned(),
    };
    let mut output = lock(&k.debug_output);
    if output.lines.len() < MAX_LINES {
        output.lines.push(line);
    } else {
        output.dropped += 1;
    }
}

/// A formatted message and what the checks need to know about its format.
struct Formatted {
    text: Vec<u8>,
    /// The first Unicode format code used, if any.
    unicode_code: Option<String>,
    /// The first floating-point format code used, if any.
    floating_point: Option<String>,
}

/// Formats `format` as the kernel's `printf` family does, for the codes drivers use: flags
/// (`-`, `0`, `+`, space, `#`), width and precision (numbers or `*`), sizes (`h`, `hh`, `l`,
/// `ll`, `w`, `z`, `I`, `I32`, `I64`), and `d i u x X o c C s S Z p %`.
fn format_message(format: &[u8], args: &mut ArgList) -> Formatted {
    let mut out = Formatted {
        text: Vec::new(),
        unicode_code: None,
        floating_point: None,
    };
    let mut i = 0;
    while i < format.len() {
        if format[i] != b'%' {
            out.text.push(format[i]);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let mut spec = Spec::default();
        while let Some(&flag) = format.get(i) {
            match flag {
                b'-' => spec.left = true,
                b'0' => spec.zero = true,
                b'+' => spec.plus = true,
                b' ' => spec.space = true,
                b'#' => spec.alternate = true,
                _ => break,
            }
            i += 1;
        }
        spec.width = number_or_star(format, &mut i, args);
        if format.get(i) == Some(&b'.') {
            i += 1;
            spec.precision = Some(number_or_star(format, &mut i, args).unwrap_or(0));
        }
        let size = parse_size(format, &mut i);
        let Some(&conversion) = format.get(i) else {
            out.text.extend_from_slice(&format[start..]);
            break;
        };
        i += 1;
        let code = String::from_utf8_lossy(&format[start..i]).into_owned();
        convert(&mut out, conversion, size, &spec, code, args);
    }
    out
}

/// Appends one conversion's text to `out`, reading its arguments.
fn convert(
    out: &mut Formatted,
    conversion: u8,
    size: Size,
    spec: &Spec,
    code: String,
    args: &mut ArgList,
) {
    // `%s`/`%c` are wide with `l` or `w`; `%S`/`%C` are wide unless `h` makes them narrow.
    let unicode = if conversion.is_ascii_uppercase() {
        size != Size::Short
    } else {
        size == Size::Wide || size == Size::Long
    };
    match conversion {
        b'%' => out.text.push(b'%'),
        b'd' | b'i' => {
            let value = signed(args.next(), size);
            let sign = if value < 0 {
                "-"
            } else if spec.plus {
                "+"
            } else if spec.space {
                " "
            } else {
                ""
            };
            spec.pad_number(&mut out.text, sign, &value.unsigned_abs().to_string());
        }
        b'u' => spec.pad_number(&mut out.text, "", &unsigned(args.next(), size).to_string()),
        b'x' | b'X' | b'o' => {
            let value = unsigned(args.next(), size);
            let (digits, prefix) = match conversion {
                b'x' => (format!("{value:x}"), "0x"),
                b'X' => (format!("{value:X}"), "0X"),
                _ => (format!("{value:o}"), "0"),
            };
            let prefix = if spec.alternate && value != 0 {
                prefix
            } else {
                ""
            };
            spec.pad_number(&mut out.text, prefix, &digits);
        }
        b'p' => {
            let value = args.next();
            spec.pad(&mut out.text, format!("{value:016X}").as_bytes());
        }
        b'c' | b'C' => {
            let value = args.next();
            let text = if unicode {
                out.unicode_code.get_or_insert(code);
                #[expect(clippy::cast_possible_truncation, reason = "a WCHAR argument")]
                String::from_utf16_lossy(&[value as u16])
            } else {
                #[expect(clippy::cast_possible_truncation, reason = "a CHAR argument")]
                String::from_utf8_lossy(&[value as u8]).into_owned()
            };
            spec.pad(&mut out.text, text.as_bytes());
        }
        b's' | b'S' => {
            let pointer = args.next();
            let text = if pointer == 0 {
                b"(null)".to_vec()
            } else if unicode {
                out.unicode_code.get_or_insert(code);
                read_wide_string(pointer as *const u16).into_bytes()
            } else {
                read_c_string(pointer as *const u8)
            };
            spec.pad(&mut out.text, spec.cut(&text));
        }
        b'Z' => {
            let pointer = args.next();
            let text = if pointer == 0 {
                b"(null)".to_vec()
            } else if size == Size::Wide {
                out.unicode_code.get_or_insert(code);
                match guest::unicode_string(pointer as *const UNICODE_STRING) {
                    Some(Ok(text)) => text.into_bytes(),
                    _ => b"(invalid UNICODE_STRING)".to_vec(),
                }
            } else {
                read_ansi_string(pointer)
            };
            spec.pad(&mut out.text, spec.cut(&text));
        }
        b'f' | b'e' | b'E' | b'g' | b'G' | b'a' | b'A' => {
            // Consumed, as a caller passes it, and printed as the code itself.
            let _ = args.next();
            out.floating_point.get_or_insert(code.clone());
            out.text.extend_from_slice(code.as_bytes());
        }
        _ => out.text.extend_from_slice(code.as_bytes()),
    }
}

/// An argument size prefix.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Size {
    #[default]
    Int,
    Short,
    Char,
    Long,
    Wide,
    Quad,
    Pointer,
}

fn parse_size(format: &[u8], i: &mut usize) -> Size {
    let rest = &format[*i..];
    let (size, len) = if rest.starts_with(b"I64") || rest.starts_with(b"ll") {
        (Size::Quad, if rest[0] == b'I' { 3 } else { 2 })
    } else if rest.starts_with(b"I32") {
        (Size::Int, 3)
    } else if rest.starts_with(b"hh") {
        (Size::Char, 2)
    } else {
        match rest.first() {
            Some(b'h') => (Size::Short, 1),
            Some(b'l') => (Size::Long, 1),
            Some(b'w') => (Size::Wide, 1),
            Some(b'z' | b'I' | b'j' | b't') => (Size::Pointer, 1),
            _ => (Size::Int, 0),
        }
    };
    *i += len;
    size
}

/// An integer argument, sign-extended from its size (`long` is 32 bits on Windows).
#[expect(
    clippy::cast_possible_truncation,
    reason = "narrowing to the argument's C type"
)]
fn signed(value: u64, size: Size) -> i64 {
    match size {
        Size::Char => i64::from(value as i8),
        Size::Short => i64::from(value as i16),
        Size::Int | Size::Long | Size::Wide => i64::from(value as i32),
        Size::Quad | Size::Pointer => value.cast_signed(),
    }
}

/// An unsigned integer argument, cut to its size.
fn unsigned(value: u64, size: Size) -> u64 {
    match size {
        Size::Char => value & 0xff,
        Size::Short => value & 0xffff,
        Size::Int | Size::Long | Size::Wide => value & 0xffff_ffff,
        Size::Quad | Size::Pointer => value,
    }
}

fn number_or_star(format: &[u8], i: &mut usize, args: &mut ArgList) -> Option<usize> {
    if format.get(*i) == Some(&b'*') {
        *i += 1;
        #[expect(clippy::cast_possible_truncation, reason = "an int argument")]
        let value = args.next() as i32;
        return Some(usize::try_from(value).unwrap_or(0).min(MAX_TRANSMITTED));
    }
    let digits = format[*i..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    let text = String::from_utf8_lossy(&format[*i..*i + digits]).into_owned();
    *i += digits;
    Some(text.parse::<usize>().unwrap_or(0).min(MAX_TRANSMITTED))
}

/// One conversion's flags, width and precision.
#[derive(Default)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "printf's flags are independent"
)]
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alternate: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

impl Spec {
    /// A string cut to the precision.
    fn cut<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        match self.precision {
            Some(precision) if precision < text.len() => &text[..precision],
            _ => text,
        }
    }

    /// `text` padded to the width with spaces.
    fn pad(&self, out: &mut Vec<u8>, text: &[u8]) {
        let fill = self.width.unwrap_or(0).saturating_sub(text.len());
        if !self.left {
            out.extend(std::iter::repeat_n(b' ', fill));
        }
        out.extend_from_slice(text);
        if self.left {
            out.extend(std::iter::repeat_n(b' ', fill));
        }
    }

    /// A number: precision as minimum digits, then zero or space padding to the width.
    fn pad_number(&self, out: &mut Vec<u8>, prefix: &str, digits: &str) {
        let mut body = String::new();
        if let Some(precision) = self.precision {
            body.extend(std::iter::repeat_n(
                '0',
                precision.saturating_sub(digits.len()),
            ));
        }
        body.push_str(digits);
        let width = self.width.unwrap_or(0);
        let len = prefix.len() + body.len();
        if self.zero && !self.left && self.precision.is_none() && width > len {
            out.extend_from_slice(prefix.as_bytes());
            out.extend(std::iter::repeat_n(b'0', width - len));
            out.extend_from_slice(body.as_bytes());
        } else {
            self.pad(out, format!("{prefix}{body}").as_bytes());
        }
    }
}

/// A NUL-terminated byte string from driver memory (at most [`MAX_STRING`] bytes).
fn read_c_string(address: *const u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_STRING {
        let byte = guest::read(address.wrapping_add(bytes.len()));
        if byte == 0 {
            break;
        }
        bytes.push(byte);
    }
    bytes
}

/// A NUL-terminated UTF-16 string from driver memory.
fn read_wide_string(address: *const u16) -> String {
    let mut units = Vec::new();
    while units.len() < MAX_STRING {
        let unit = guest::read(address.wrapping_add(units.len()));
        if unit == 0 {
            break;
        }
        units.push(unit);
    }
    String::from_utf16_lossy(&units)
}

/// `ANSI_STRING` (wdm.h; the layout of `UNICODE_STRING` with a `PCHAR` buffer).
#[repr(C)]
#[derive(Clone, Copy)]
struct AnsiString {
    length: u16,
    maximum_length: u16,
    buffer: u64,
}

/// An `ANSI_STRING`'s text from driver memory.
fn read_ansi_string(address: u64) -> Vec<u8> {
    let string = guest::read(address as *const AnsiString);
    if string.buffer == 0 {
        return b"(null)".to_vec();
    }
    guest::read_bytes(
        string.buffer as *const u8,
        usize::from(string.length).min(MAX_STRING),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format_with(format: &str, values: &[u64]) -> (String, Formatted) {
        let mut list = ArgList {
            next: values.as_ptr(),
        };
        let formatted = format_message(format.as_bytes(), &mut list);
        (
            String::from_utf8_lossy(&formatted.text).into_owned(),
            formatted,
        )
    }

    #[test]
    fn integers_strings_and_flags_format_as_the_kernel_printf_does() {
        let name = b"abc\0";
        let wide: Vec<u16> = "wide\0".encode_utf16().collect();
        let (text, formatted) = format_with(
            "%d|%5u|%-4x|%08X|%#x|%lld|%I64x|%hd|%s|%.2s|%ws|%c|%%|%p",
            &[
                (-5i64).cast_unsigned(),
                42,
                0xab,
                0xbeef,
                0x10,
                (-1i64).cast_unsigned(),
                0x1_0000_0000,
                0x1_ffff,
                name.as_ptr() as u64,
                name.as_ptr() as u64,
                wide.as_ptr() as u64,
                u64::from(b'z'),
                0x1234,
            ],
        );
        assert_eq!(
            text,
            "-5|   42|ab  |0000BEEF|0x10|-1|100000000|-1|abc|ab|wide|z|%|0000000000001234"
        );
        assert_eq!(formatted.unicode_code.as_deref(), Some("%ws"));
        assert!(formatted.floating_point.is_none());
    }

    #[test]
    fn unicode_strings_and_floating_point_codes_are_noticed() {
        let buffer: Vec<u16> = "C:\\x".encode_utf16().collect();
        let string = UNICODE_STRING {
            Length: 8,
            MaximumLength: 8,
            Buffer: buffer.as_ptr().cast_mut(),
        };
        let (text, formatted) = format_with("%wZ %f", &[(&raw const string) as u64, 0]);
        assert_eq!(text, "C:\\x %f");
        assert_eq!(formatted.unicode_code.as_deref(), Some("%wZ"));
        assert_eq!(formatted.floating_point.as_deref(), Some("%f"));
        let (text, _) = format_with("%s %wZ", &[0, 0]);
        assert_eq!(text, "(null) (null)");
    }
}
