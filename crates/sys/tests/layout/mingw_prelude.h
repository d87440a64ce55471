/* Layout oracle: mingw-w64's DDK headers (Debian mingw-w64-x86-64-dev and mingw-w64-common,
 * x86_64-w64-mingw32/include/ddk). Compiled by crates/sys/tests/layout.rs with clang
 * --target=x86_64-pc-windows-msvc -fgnuc-version=4.2.1. mingw-w64 ships no fltkernel.h: the
 * Filter Manager types are checked against Wine only. ntifs.h includes ntddk.h and wdm.h. */
#include <stddef.h>
#include <ntifs.h>
