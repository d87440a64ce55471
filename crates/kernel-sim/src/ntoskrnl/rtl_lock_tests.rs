//! Tests of the Rtl string routines, `SLists`, lookaside lists and fast mutexes added in issue 18:
//! each plays the driver from Rust inside a real driver call and asserts what the routine
//! answers and what the verifier records, including the misuses the C filter `queue.c` does
//! not make.

use std::sync::Arc;
use std::time::Duration;

use vigil_sys::{
    APC_LEVEL, DISPATCH_LEVEL, PASSIVE_LEVEL, PVOID, STATUS_BUFFER_OVERFLOW,
    STATUS_BUFFER_TOO_SMALL, STATUS_SUCCESS, UNICODE_STRING,
};

use crate::config::{PoolKind, SimConfig};
use crate::faults::FaultPlan;
use crate::image::symbols::Symbols;
use crate::kernel::Kernel;
use crate::machine::guest;
use crate::machine::state::{self, ImageBounds};
use crate::ntoskrnl::{fast_mutex, lookaside, rtl_strings as rtl, slist};
use crate::report::ViolationKind;

const TAG: u32 = u32::from_le_bytes(*b"Test");

fn kernel_with(faults: FaultPlan) -> Arc<Kernel> {
    Kernel::new(
        SimConfig {
            hang_timeout: Duration::from_secs(2),
            pool: PoolKind::Special,
            faults,
            ..SimConfig::default()
        },
        "test.sys".into(),
        ImageBounds::EMPTY,
        Vec::new(),
        Symbols::default(),
    )
}

fn kernel() -> Arc<Kernel> {
    kernel_with(FaultPlan::default())
}

fn rules(k: &Kernel) -> Vec<String> {
    k.violations().into_iter().map(|v| v.rule).collect()
}

/// A counted string over `buffer` (host memory the routines read and write like the driver's).
fn counted(buffer: &mut [u16], length_units: usize) -> UNICODE_STRING {
    UNICODE_STRING {
        Length: u16::try_from(length_units * 2).unwrap(),
        MaximumLength: u16::try_from(buffer.len() * 2).unwrap(),
        Buffer: buffer.as_mut_ptr(),
    }
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain([0]).collect()
}

fn text_of(s: &UNICODE_STRING) -> String {
    let units: Vec<u16> = (0..usize::from(s.Length / 2))
        .map(|i| guest::read(s.Buffer.wrapping_add(i)))
        .collect();
    String::from_utf16_lossy(&units)
}

#[test]
fn the_rtl_string_routines_answer_with_their_documented_statuses() {
    let k = kernel();
    k.call_driver("test", Some(PASSIVE_LEVEL), || {
        // Init: the Buffer points at the source, lengths without / with the NUL; NULL: empty.
        let source = wide("Alpha");
        let mut init = UNICODE_STRING {
            Length: 1,
            MaximumLength: 1,
            Buffer: std::ptr::null_mut(),
        };
        rtl::rtl_init_unicode_string(&raw mut init, source.as_ptr());
        assert_eq!((init.Length, init.MaximumLength), (10, 12));
        assert_eq!(init.Buffer.cast_const(), source.as_ptr());
        rtl::rtl_init_unicode_string(&raw mut init, std::ptr::null());
        assert_eq!((init.Length, init.MaximumLength), (0, 0));

        // Copy: cut at the destination's MaximumLength.
        let mut small = [0u16; 3];
        let mut dest = counted(&mut small, 0);
        let mut alpha = wide("Alpha");
        let src = counted(&mut alpha, 5);
        rtl::rtl_copy_unicode_string(&raw mut dest, &raw const src);
        assert_eq!(text_of(&dest), "Alp");

        // Append: too small is STATUS_BUFFER_TOO_SMALL, the destination unchanged.
        let mut room = [0u16; 8];
        let mut dest = counted(&mut room, 0);
        assert_eq!(
            rtl::rtl_append_unicode_to_string(&raw mut dest, wide("Alpha").as_ptr()),
            STATUS_SUCCESS
        );
        assert_eq!(
            rtl::rtl_append_unicode_string_to_string(&raw mut dest, &raw const src),
            STATUS_BUFFER_TOO_SMALL
        );
        assert_eq!(text_of(&dest), "Alpha");
        assert_eq!(
            rtl::rtl_append_unicode_to_string(&raw mut dest, wide("!!!").as_ptr()),
            STATUS_SUCCESS
        );
        assert_eq!(text_of(&dest), "Alpha!!!");
        assert_eq!(
            rtl::rtl_append_unicode_to_string(&raw mut dest, wide("?").as_ptr()),
            STATUS_BUFFER_TOO_SMALL
        );

        // Compare, equal, prefix.
        let mut lower = wide("alp");
        let lower = counted(&mut lower, 3);
        assert!(rtl::rtl_compare_unicode_string(&raw const lower, &raw const src, 0) > 0);
        assert_eq!(
            rtl::rtl_equal_unicode_string(&raw const lower, &raw const src, 1),
            0
        );
        assert_eq!(
            rtl::rtl_prefix_unicode_string(&raw const lower, &raw const src, 1),
            1
        );
        assert_eq!(
            rtl::rtl_prefix_unicode_string(&raw const lower, &raw const src, 0),
            0
        );

        // Upcase into a caller's buffer: too small is STATUS_BUFFER_OVERFLOW.
        let mut tiny = [0u16; 2];
        let mut dest = counted(&mut tiny, 0);
        assert_eq!(
            rtl::rtl_upcase_unicode_string(&raw mut dest, &raw const src, 0),
            STATUS_BUFFER_OVERFLOW
        );
        // Allocated: freed by RtlFreeUnicodeString, which zeroes the string.
        let mut upper = UNICODE_STRING {
            Length: 0,
            MaximumLength: 0,
            Buffer: std::ptr::null_mut(),
        };
        assert_eq!(
            rtl::rtl_upcase_unicode_string(&raw mut upper, &raw const src, 1),
            STATUS_SUCCESS
        );
        assert_eq!(text_of(&upper), "ALPHA");
        rtl::rtl_free_unicode_string(&raw mut upper);
        assert!(upper.Buffer.is_null() && upper.Length == 0 && upper.MaximumLength == 0);

        // To ANSI, allocated, NUL-terminated, freed by RtlFreeAnsiString.
        let mut ansi = UNICODE_STRING {
            Length: 0,
            MaximumLength: 0,
            Buffer: std::ptr::null_mut(),
        };
        assert_eq!(
            rtl::rtl_unicode_string_to_ansi_string(&raw mut ansi, &raw const src, 1),
            STATUS_SUCCESS
        );
        assert_eq!((ansi.Length, ansi.MaximumLength), (5, 6));
        assert_eq!(guest::read_bytes(ansi.Buffer.cast(), 6), b"Alpha\0");
        rtl::rtl_free_ansi_string(&raw mut ansi);
    })
    .expect("returned");
    assert_eq!(rules(&k), Vec::<String>::new());
}

#[test]
fn malformed_strings_and_foreign_frees_are_reported() {
    let k = kernel();
    k.call_driver("test", Some(PASSIVE_LEVEL), || {
        let mut buffer = wide("Alpha");
        let mut odd = counted(&mut buffer, 2);
        odd.Length = 3;
        let mut long = counted(&mut buffer, 2);
        long.Length = long.MaximumLength + 2;
        let no_buffer = UNICODE_STRING {
            Length: 4,
            MaximumLength: 4,
            Buffer: std::ptr::null_mut(),
        };
        let good = counted(&mut buffer, 2);
        for bad in [odd, long, no_buffer] {
            assert_eq!(
                rtl::rtl_equal_unicode_string(&raw const bad, &raw const good, 0),
                0
            );
        }
        // A buffer no Rtl routine allocated: reported, nothing freed, the string kept.
        let mut mine = counted(&mut buffer, 5);
        rtl::rtl_free_unicode_string(&raw mut mine);
        assert_eq!(mine.Buffer, buffer.as_mut_ptr());
    })
    .expect("returned");
    let found = rules(&k);
    assert_eq!(found.len(), 4, "{found:?}");
    for rule in &found[..3] {
        assert!(
            rule.starts_with("RtlEqualUnicodeString: a well-formed counted string String1"),
            "{rule}"
        );
    }
    assert!(
        found[3].starts_with("RtlFreeUnicodeString: a buffer allocated by RtlUpcaseUnicodeString")
    );
}

#[test]
fn an_allocating_upcase_can_fail_and_then_allocates_nothing() {
    let k = kernel_with(FaultPlan {
        fail_nth: Some(1),
        random: None,
    });
    k.call_driver("test", Some(PASSIVE_LEVEL), || {
        let mut alpha = wide("Alpha");
        let src = counted(&mut alpha, 5);
        let mut upper = UNICODE_STRING {
            Length: 0,
            MaximumLength: 0,
            Buffer: std::ptr::null_mut(),
        };
        assert_eq!(
            rtl::rtl_upcase_unicode_string(&raw mut upper, &raw const src, 1),
            0xC000_0017_u32.cast_signed()
        );
        assert!(upper.Buffer.is_null());
    })
    .expect("returned");
    assert_eq!(k.faults.injected().len(), 1);
    assert!(
        crate::kernel::lock(&k.pool).drain_leaks().is_empty(),
        "nothing allocated"
    );
    assert_eq!(rules(&k), Vec::<String>::new());
}

#[test]
fn an_slist_pushes_pops_and_counts_its_aligned_entries() {
    #[repr(C, align(16))]
    struct Aligned([u64; 2]);
    let k = kernel();
    let mut head = Aligned([7, 7]);
    let mut entries = [Aligned([0, 0]), Aligned([0, 0])];
    k.call_driver("test", Some(DISPATCH_LEVEL), || {
        let h: PVOID = (&raw mut head).cast();
        slist::initialize_slist_head(h);
        assert_eq!(slist::ex_query_depth_slist(h), 0);
        let a: PVOID = (&raw mut entries[0]).cast();
        let b: PVOID = (&raw mut entries[1]).cast();
        assert!(slist::exp_interlocked_push_entry_slist(h, a).is_null());
        assert_eq!(slist::exp_interlocked_push_entry_slist(h, b), a);
        assert_eq!(slist::ex_query_depth_slist(h), 2);
        assert_eq!(slist::rtl_first_entry_slist(h), b);
        assert_eq!(slist::exp_interlocked_pop_entry_slist(h), b);
        assert_eq!(slist::exp_interlocked_flush_slist(h), a);
        assert!(slist::exp_interlocked_pop_entry_slist(h).is_null());
        assert_eq!(slist::ex_query_depth_slist(h), 0);
        // An entry off MEMORY_ALLOCATION_ALIGNMENT is refused.
        let misaligned = (a as usize + 8) as PVOID;
        assert!(slist::exp_interlocked_push_entry_slist(h, misaligned).is_null());
    })
    .expect("returned");
    assert_eq!(
        rules(&k),
        [
            "ExpInterlockedPushEntrySList: ListEntry non-NULL and aligned on MEMORY_ALLOCATION_ALIGNMENT (16 bytes)"
        ]
    );
}

#[repr(C, align(64))]
struct ListStorage([u64; 16]);

type Allocate = extern "win64" fn(u32, usize, u32) -> PVOID;
type Free = extern "win64" fn(PVOID);

/// The list's `Allocate` and `Free` pointers, as the inline routines call them.
fn routines_of(list: &ListStorage) -> (Allocate, Free) {
    // SAFETY: kernel-sim wrote its default Allocate there (offset 48 of GENERAL_LOOKASIDE),
    // a function of this signature.
    let allocate = unsafe { std::mem::transmute::<u64, Allocate>(list.0[6]) };
    // SAFETY: its default Free (offset 56), a function of this signature.
    let free = unsafe { std::mem::transmute::<u64, Free>(list.0[7]) };
    (allocate, free)
}

#[test]
fn lookaside_lists_allocate_fail_on_injection_and_catch_foreign_entries_and_leaks() {
    // The second failable call fails: the first allocation succeeds, the second returns NULL.
    let k = kernel_with(FaultPlan {
        fail_nth: Some(2),
        random: None,
    });
    let mut one = ListStorage([0; 16]);
    let mut other = ListStorage([0; 16]);
    k.call_driver("test", Some(PASSIVE_LEVEL), || {
        let a: PVOID = (&raw mut one).cast();
        let b: PVOID = (&raw mut other).cast();
        let null = std::ptr::null_mut();
        lookaside::ex_initialize_npaged_lookaside_list(a, null, null, 0, 64, TAG, 0);
        lookaside::ex_initialize_npaged_lookaside_list(b, null, null, 0, 128, TAG, 3);
        // Depth 4 of 256, as Windows starts a list.
        assert_eq!(one.0[2] & 0xffff_ffff, 4 | (256 << 16));
        let (allocate, free) = routines_of(&one);
        let entry = allocate(0, 64, TAG);
        assert!(!entry.is_null());
        assert!(allocate(0, 64, TAG).is_null(), "the injected failure");
        // Freed to the other list: reported at the push.
        slist::exp_interlocked_push_entry_slist(b, entry);
        assert_eq!(slist::exp_interlocked_pop_entry_slist(b), entry);
        // Back to its own list, then the list is deleted with it.
        slist::exp_interlocked_push_entry_slist(a, entry);
        lookaside::ex_delete_npaged_lookaside_list(a);
        let spare = allocate(0, 64, TAG);
        free(spare);
    })
    .expect("returned");
    crate::ntoskrnl::report_list_and_mutex_leaks(&k, "the test");
    // The entry the list held went back to the pool at the delete; the spare was freed.
    assert!(crate::kernel::lock(&k.pool).drain_leaks().is_empty());
    assert_eq!(
        rules(&k),
        [
            "ExInitializeNPagedLookasideList: Depth zero (reserved)",
            "ExFreeToNPagedLookasideList: an entry allocated from the same list",
            "every lookaside list is deleted (ExDeleteNPagedLookasideList) before the driver is gone",
        ]
    );
}

#[test]
fn a_fast_mutex_raises_to_apc_level_and_is_not_recursive() {
    let k = kernel();
    // ExInitializeFastMutex's work: Count = FM_LOCK_BIT, the rest zero.
    let mut mutex = [1u64, 0, 0, 0, 0, 0, 0];
    let at: PVOID = mutex.as_mut_ptr().cast();
    k.call_driver("test", Some(PASSIVE_LEVEL), || {
        fast_mutex::ex_acquire_fast_mutex(at);
        assert_eq!(state::current_irql(), APC_LEVEL);
        fast_mutex::ex_release_fast_mutex(at);
        assert_eq!(state::current_irql(), PASSIVE_LEVEL);
        assert_eq!(fast_mutex::ex_try_to_acquire_fast_mutex(at), 1);
        fast_mutex::ex_release_fast_mutex(at);
        // Released again: the thread owns it no more (and the IRQL is wrong too).
        fast_mutex::ex_release_fast_mutex(at);
    })
    .expect("returned");
    // Acquired twice by one thread: a deadlock, the call abandoned.
    let ended = k.call_driver("test", Some(PASSIVE_LEVEL), || {
        fast_mutex::ex_acquire_fast_mutex(at);
        fast_mutex::ex_acquire_fast_mutex(at);
    });
    assert!(ended.is_none());
    let found: Vec<(ViolationKind, String)> = k
        .violations()
        .into_iter()
        .map(|v| (v.kind, v.rule))
        .collect();
    assert_eq!(
        found,
        [
            (ViolationKind::Irql, "ExReleaseFastMutex: IRQL == APC_LEVEL".to_owned()),
            (
                ViolationKind::Parameter,
                "ExReleaseFastMutex: a fast mutex the calling thread acquired (ExAcquireFastMutex or ExTryToAcquireFastMutex)".to_owned()
            ),
            (ViolationKind::Deadlock, "ExAcquireFastMutex: a fast mutex is not recursive".to_owned()),
        ]
    );
}

type AllocateEx = extern "win64" fn(u32, usize, u32, PVOID) -> PVOID;
type FreeEx = extern "win64" fn(PVOID, PVOID);

#[test]
fn ex_lookaside_lists_check_their_flags_and_the_list_an_entry_is_freed_to() {
    let k = kernel();
    let mut one = ListStorage([0; 16]);
    let mut other = ListStorage([0; 16]);
    k.call_driver("test", Some(PASSIVE_LEVEL), || {
        let a: PVOID = (&raw mut one).cast();
        let b: PVOID = (&raw mut other).cast();
        let null = std::ptr::null_mut();
        // Not a pool type entries can come from (DontUseThisType).
        assert_eq!(
            lookaside::ex_initialize_lookaside_list_ex(a, null, null, 3, 0, 64, TAG, 0),
            0xC000_00F2_u32.cast_signed()
        );
        // Both EX_LOOKASIDE_LIST_EX_FLAGS_RAISE_ON_FAIL and _FAIL_NO_RAISE: mutually exclusive.
        assert_eq!(
            lookaside::ex_initialize_lookaside_list_ex(a, null, null, 1, 3, 64, TAG, 0),
            0xC000_00F3_u32.cast_signed()
        );
        assert_eq!(
            lookaside::ex_initialize_lookaside_list_ex(a, null, null, 1, 0, 64, TAG, 0),
            STATUS_SUCCESS
        );
        assert_eq!(
            lookaside::ex_initialize_lookaside_list_ex(b, null, null, 1, 0, 32, TAG, 0),
            STATUS_SUCCESS
        );
        // SAFETY: kernel-sim's default AllocateEx and FreeEx (offsets 48 and 56), of these
        // signatures.
        let allocate = unsafe { std::mem::transmute::<u64, AllocateEx>(one.0[6]) };
        // SAFETY: as above.
        let free = unsafe { std::mem::transmute::<u64, FreeEx>(one.0[7]) };
        let entry = allocate(1, 64, TAG, a);
        assert!(!entry.is_null());
        // Freed through the other list's FreeEx: not one of its entries.
        free(entry, b);
        lookaside::ex_delete_lookaside_list_ex(a);
        lookaside::ex_delete_lookaside_list_ex(b);
    })
    .expect("returned");
    assert_eq!(
        rules(&k),
        ["ExFreeToLookasideListEx: an entry allocated from the same list"]
    );
}

#[test]
fn the_irql_rows_and_resident_buffers_are_checked() {
    use crate::ntoskrnl::pool_with_tag::ex_allocate_pool_with_tag;
    let k = kernel();
    k.call_driver("test", Some(APC_LEVEL), || {
        let mut alpha = wide("Alpha");
        let src = counted(&mut alpha, 5);
        // PASSIVE_LEVEL only.
        assert_eq!(
            rtl::rtl_equal_unicode_string(&raw const src, &raw const src, 0),
            1
        );
        // A paged destination buffer (allocated here at APC_LEVEL), appended to at DISPATCH_LEVEL.
        let paged = ex_allocate_pool_with_tag(1, 32, TAG).cast::<u16>();
        let mut dest = UNICODE_STRING {
            Length: 0,
            MaximumLength: 32,
            Buffer: paged,
        };
        state::set_irql(DISPATCH_LEVEL);
        assert_eq!(
            rtl::rtl_append_unicode_string_to_string(&raw mut dest, &raw const src),
            STATUS_SUCCESS
        );
        state::set_irql(APC_LEVEL);
        crate::ntoskrnl::pool_with_tag::ex_free_pool(paged.cast());
    })
    .expect("returned");
    assert_eq!(
        rules(&k),
        [
            "RtlEqualUnicodeString: IRQL <= PASSIVE_LEVEL",
            "RtlAppendUnicodeStringToString: buffers resident (nonpaged) at IRQL >= DISPATCH_LEVEL",
        ]
    );
}

#[test]
fn name_matching_upcases_the_name_through_a_given_table_and_reports_wildcards_in_it() {
    use crate::ntoskrnl::name_expression::fs_rtl_is_name_in_expression;
    let k = kernel();
    // A table that upcases nothing: only an expression in the name's own case matches.
    let identity: Vec<u16> = (0..=u16::MAX).collect();
    k.call_driver("test", Some(PASSIVE_LEVEL), || {
        let mut expression = wide("*.LOG");
        let expression = counted(&mut expression, 5);
        let mut lower = wide("a.log");
        let lower = counted(&mut lower, 5);
        assert_eq!(
            fs_rtl_is_name_in_expression(
                &raw const expression,
                &raw const lower,
                1,
                std::ptr::null()
            ),
            1
        );
        assert_eq!(
            fs_rtl_is_name_in_expression(
                &raw const expression,
                &raw const lower,
                1,
                identity.as_ptr()
            ),
            0
        );
        let mut starred = wide("a*.log");
        let starred = counted(&mut starred, 6);
        fs_rtl_is_name_in_expression(
            &raw const expression,
            &raw const starred,
            0,
            std::ptr::null(),
        );
    })
    .expect("returned");
    assert_eq!(
        rules(&k),
        ["FsRtlIsNameInExpression: a Name without wildcard characters"]
    );
}
