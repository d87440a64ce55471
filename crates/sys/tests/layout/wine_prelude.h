/* Layout oracle: Wine's DDK headers (Debian libwine-dev, include/wine/wine/windows/ddk).
 * Compiled by crates/sys/tests/layout.rs with clang --target=x86_64-pc-windows-msvc
 * -fms-extensions against Wine's msvcrt and windows directories. Wine's kernel headers start
 * from the user-mode base set: stdarg, windef, winternl, then the DDK. */
#include <stdarg.h>
#include <stddef.h>
#include <windef.h>
#include <winternl.h>
#include <ddk/wdm.h>
#include <ddk/ntddk.h>
#include <ddk/ntifs.h>
#include <ddk/fltkernel.h>
