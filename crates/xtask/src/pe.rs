//! The PE image checksum: the 16-bit one's-complement-style sum of the file (with the checksum
//! field itself counted as zero), carries folded in, plus the file length. This is the value the
//! linker's `/RELEASE` and `editbin /RELEASE` write, and which the kernel checks for drivers.

/// Offset of `e_lfanew` in the DOS header.
const E_LFANEW_OFFSET: usize = 0x3c;
/// Offset of `CheckSum` from the start of the optional header (same for PE32 and PE32+).
const CHECKSUM_IN_OPTIONAL_HEADER: usize = 64;
/// `PE\0\0` signature plus the 20-byte COFF file header.
const OPTIONAL_HEADER_FROM_PE: usize = 4 + 20;

/// The file offset of the `CheckSum` field.
///
/// # Errors
///
/// Why the bytes are not a PE image (no MZ or PE signature, truncated headers).
pub fn checksum_offset(image: &[u8]) -> Result<usize, &'static str> {
    if image.get(..2) != Some(b"MZ") {
        return Err("no MZ signature");
    }
    let lfanew = image
        .get(E_LFANEW_OFFSET..E_LFANEW_OFFSET + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("truncated DOS header")?;
    if image.get(lfanew..lfanew + 4) != Some(b"PE\0\0") {
        return Err("no PE signature at e_lfanew");
    }
    let offset = lfanew + OPTIONAL_HEADER_FROM_PE + CHECKSUM_IN_OPTIONAL_HEADER;
    if offset + 4 > image.len() {
        return Err("truncated optional header");
    }
    Ok(offset)
}

/// Computes the checksum of `image`, counting the checksum field as zero.
///
/// # Errors
///
/// As [`checksum_offset`], or an image too large for a 32-bit checksum.
pub fn pe_checksum(image: &[u8]) -> Result<u32, &'static str> {
    let field = checksum_offset(image)?;
    let mut sum: u64 = 0;
    for (index, pair) in image.chunks(2).enumerate() {
        let offset = index * 2;
        if offset >= field && offset < field + 4 {
            continue;
        }
        let word = u16::from_le_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u64::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    let length = u64::try_from(image.len()).map_err(|_| "image too large")?;
    u32::try_from(sum + length).map_err(|_| "image too large for a PE checksum")
}

/// Writes the correct checksum into `image`.
///
/// # Errors
///
/// As [`pe_checksum`]; the image is unchanged then.
pub fn stamp_pe_checksum(image: &mut [u8]) -> Result<(), &'static str> {
    let field = checksum_offset(image)?;
    let checksum = pe_checksum(image)?;
    image[field..field + 4].copy_from_slice(&checksum.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal header: MZ, `e_lfanew` = 0x40, PE signature, zeroed COFF and optional headers.
    fn tiny_image() -> Vec<u8> {
        let mut image = vec![0u8; 0x40 + 24 + 96];
        image[..2].copy_from_slice(b"MZ");
        image[E_LFANEW_OFFSET..E_LFANEW_OFFSET + 4].copy_from_slice(&0x40u32.to_le_bytes());
        image[0x40..0x44].copy_from_slice(b"PE\0\0");
        image
    }

    #[test]
    fn checksum_ignores_its_own_field_and_counts_length() {
        let mut image = tiny_image();
        let before = pe_checksum(&image).unwrap();
        // 'M' 'Z' = 0x5a4d, "PE" = 0x4550, e_lfanew word 0x40, plus the length.
        assert_eq!(
            before,
            0x5a4d + 0x4550 + 0x40 + u32::try_from(image.len()).unwrap()
        );
        stamp_pe_checksum(&mut image).unwrap();
        assert_eq!(
            pe_checksum(&image).unwrap(),
            before,
            "the stamped field must not count"
        );
        let field = checksum_offset(&image).unwrap();
        assert_eq!(
            u32::from_le_bytes(image[field..field + 4].try_into().unwrap()),
            before
        );
    }

    #[test]
    fn carries_fold_back_in() {
        let mut image = tiny_image();
        image.extend_from_slice(&[0xff; 8]);
        let sum = 0x5a4d + 0x4550 + 0x40 + 4 * 0xffff;
        let folded = (sum & 0xffff) + (sum >> 16);
        let folded = (folded & 0xffff) + (folded >> 16);
        assert_eq!(
            pe_checksum(&image).unwrap(),
            folded + u32::try_from(image.len()).unwrap()
        );
    }

    #[test]
    fn rejects_non_pe() {
        assert_eq!(pe_checksum(b"not a pe"), Err("no MZ signature"));
        let mut image = tiny_image();
        image[0x40] = b'X';
        assert_eq!(pe_checksum(&image), Err("no PE signature at e_lfanew"));
    }
}
