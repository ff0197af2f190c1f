//! QR codes: a payload encoded in byte mode, drawn by the `qrcode` crate's own renderer for a
//! terminal (Unicode half blocks) or into a grayscale PNG (written with the `png` crate).
//!
//! It knows nothing of what the payload means (a GiroCode, a QR-bill) and must never change it:
//! the bytes a scanner reads back are the bytes given.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use qrcode::bits::Bits;
use qrcode::render::unicode::Dense1x2;
use qrcode::render::{Canvas, Pixel};
use qrcode::types::QrError as EncodeError;
use qrcode::{Color, EcLevel, QrCode, Version};

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("cannot make a QR code of {bytes} bytes: {source}")]
    Encode { bytes: usize, source: EncodeError },
    #[error("cannot write the QR code to {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the QR code to {path}: {source}")]
    Png {
        path: PathBuf,
        source: png::EncodingError,
    },
}

/// ISO/IEC 18004 asks for four light modules around the symbol; scanners rely on it to find the
/// finder patterns, so it is part of every rendering (the renderer's quiet zone), not left to
/// the caller.
pub const QUIET_ZONE: usize = 4;
const PNG_PIXELS_PER_MODULE: u32 = 8;

/// Black glyphs on a white background, set explicitly on every line.
///
/// Why explicit colours: printing "dark = glyph, light = space" in the terminal's own colours
/// gives a correct code on a light theme and an inverted one on a dark theme, which many
/// scanners (banking apps included) refuse; printing it the other way round fails the other
/// way. Setting both colours makes the code dark-on-light whatever the theme. SGR 30 and 47 are
/// the base ECMA-48 colours every colour terminal (xterm, VTE, iTerm2, Windows Terminal, the
/// Linux console) supports; themes tint them slightly, never enough to lose the contrast.
/// Reset at the end of each line so a wrapped or interrupted line does not paint the prompt.
const TERMINAL_ON: &str = "\x1b[30;47m";
const TERMINAL_OFF: &str = "\x1b[0m";

/// The QR code as text for a terminal: two modules per character using the Unicode half blocks
/// (▀ ▄ █ and space), dark on light, with the 4-module quiet zone the standard requires.
///
/// Each line is wrapped in explicit colours (ANSI black on white), so the code is dark-on-light
/// on dark and light themes alike: a glyph's foreground half is a dark module, the background
/// half a light one. Half blocks keep the modules roughly square in the usual 1:2 terminal
/// cell. No trailing newline: print it with `println!`.
pub fn terminal(payload: &str) -> Result<String, QrError> {
    let drawn = encode(payload)?
        .render::<Dense1x2>()
        .quiet_zone(true)
        .module_dimensions(1, 1)
        .build();
    let lines: Vec<String> = drawn
        .lines()
        .map(|glyphs| format!("{TERMINAL_ON}{glyphs}{TERMINAL_OFF}"))
        .collect();
    Ok(lines.join("\n"))
}

/// The QR code as a PNG file (black on white, 8 pixels per module, quiet zone included).
pub fn png(payload: &str, path: &Path) -> Result<(), QrError> {
    let bytes = png_bytes(payload).map_err(|e| match e {
        PngError::Encode(e) => e,
        PngError::Png(source) => QrError::Png {
            path: path.to_path_buf(),
            source,
        },
    })?;
    let io_error = |source| QrError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(io_error)?);
    out.write_all(&bytes).map_err(io_error)?;
    out.flush().map_err(io_error)?;
    Ok(())
}

/// Why a PNG could not be made in memory.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error(transparent)]
    Encode(QrError),
    #[error("cannot draw the QR code as a PNG: {0}")]
    Png(#[from] png::EncodingError),
}

/// The QR code as PNG bytes (as `png` writes them), for an email's inline image.
pub fn png_bytes(payload: &str) -> Result<Vec<u8>, PngError> {
    let Gray { side, pixels } = encode(payload)
        .map_err(PngError::Encode)?
        .render::<Luma>()
        .quiet_zone(true)
        .module_dimensions(PNG_PIXELS_PER_MODULE, PNG_PIXELS_PER_MODULE)
        .build();
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}

/// Encodes in byte mode at error correction level M, the smallest version that fits.
///
/// Byte mode is forced because the crate's mode optimiser takes some runs of UTF-8 bytes for
/// Shift JIS pairs and encodes them in Kanji mode ("€—€—€—" does: E2 82 AC E2 80 94 …); a
/// scanner would then return kanji instead of the text. Byte mode is also what both payment
/// standards size their limits on (331 bytes is version 13-M, 997 is version 25-M). No ECI
/// header: EPC069-12 declares the character set inside the payload, and readers that do not
/// expect an ECI may show it as data.
pub fn encode(payload: &str) -> Result<QrCode, QrError> {
    let data = payload.as_bytes();
    let qr_error = |source| QrError::Encode {
        bytes: data.len(),
        source,
    };
    for version in 1..=40 {
        let mut bits = Bits::new(Version::Normal(version));
        match bits
            .push_byte_data(data)
            .and_then(|()| bits.push_terminator(EcLevel::M))
        {
            Ok(()) => return QrCode::with_bits(bits, EcLevel::M).map_err(qr_error),
            Err(EncodeError::DataTooLong) => continue,
            Err(other) => return Err(qr_error(other)),
        }
    }
    Err(qr_error(EncodeError::DataTooLong))
}

/// A grayscale pixel for the crate's renderer (its own image renderer would pull in the
/// `image` crate for what is one byte per pixel).
#[derive(Debug, Clone, Copy)]
struct Luma(u8);

/// A square grayscale picture, row by row.
struct Gray {
    side: u32,
    pixels: Vec<u8>,
}

struct GrayCanvas {
    side: u32,
    dark: u8,
    pixels: Vec<u8>,
}

impl Pixel for Luma {
    type Image = Gray;
    type Canvas = GrayCanvas;

    fn default_color(color: Color) -> Luma {
        color.select(Luma(0), Luma(255))
    }
}

impl Canvas for GrayCanvas {
    type Pixel = Luma;
    type Image = Gray;

    fn new(width: u32, height: u32, dark: Luma, light: Luma) -> Self {
        // A QR symbol is at most 177 + 8 modules wide: at 8 pixels a module, 1480 pixels.
        let count = usize::try_from(u64::from(width) * u64::from(height))
            .expect("a QR code is at most 1480 pixels wide");
        GrayCanvas {
            side: width,
            dark: dark.0,
            pixels: vec![light.0; count],
        }
    }

    fn draw_dark_pixel(&mut self, x: u32, y: u32) {
        let at = usize::try_from(u64::from(y) * u64::from(self.side) + u64::from(x))
            .expect("inside the canvas");
        self.pixels[at] = self.dark;
    }

    fn into_image(self) -> Gray {
        Gray {
            side: self.side,
            pixels: self.pixels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GiroCode as `payment::epc` makes it for Pocket's example order and 100.00 EUR.
    const PAYLOAD: &str =
        "BCD\n002\n1\nSCT\nLUKBCH2260A\nPocket App\nCH9400778214768302002\nEUR100.00\n\nRF18GW8K79";

    /// Reads the terminal rendering back into modules, the inverse of `terminal`.
    fn modules_from_terminal(text: &str) -> Vec<Vec<bool>> {
        let mut rows = Vec::new();
        for line in text.lines() {
            let glyphs = line
                .strip_prefix(TERMINAL_ON)
                .and_then(|l| l.strip_suffix(TERMINAL_OFF))
                .unwrap_or_else(|| panic!("line without its colours: {line:?}"));
            let (top, bottom): (Vec<bool>, Vec<bool>) = glyphs
                .chars()
                .map(|c| match c {
                    '█' => (true, true),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    ' ' => (false, false),
                    other => panic!("unexpected glyph {other:?}"),
                })
                .unzip();
            rows.push(top);
            rows.push(bottom);
        }
        rows
    }

    #[test]
    fn terminal_qr_code_has_quiet_zone_and_every_module_of_the_symbol() {
        let text = terminal(PAYLOAD).unwrap();
        let code = encode(PAYLOAD).unwrap();
        let side = code.width() + 2 * QUIET_ZONE;

        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), side.div_ceil(2));
        for line in &lines {
            assert_eq!(line.chars().count(), lines[0].chars().count());
        }
        for line in lines[..2].iter().chain(&lines[lines.len() - 2..]) {
            assert!(
                !line.contains(['█', '▀', '▄']),
                "quiet zone has a dark module"
            );
        }

        let rows = modules_from_terminal(&text);
        assert!(rows.iter().all(|r| r.len() == side));
        // The top-left finder pattern's corner.
        assert!(rows[QUIET_ZONE][QUIET_ZONE]);
        let colors = code.to_colors();
        for y in 0..code.width() {
            for x in 0..code.width() {
                assert_eq!(
                    rows[y + QUIET_ZONE][x + QUIET_ZONE],
                    colors[y * code.width() + x] == Color::Dark,
                    "module ({x}, {y})"
                );
            }
        }
        // The odd row that pads the last line is light.
        assert!(rows[side..].iter().flatten().all(|dark| !dark));
    }

    #[test]
    fn png_qr_code_is_8_pixels_per_module_with_quiet_zone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pocket.png");
        png(PAYLOAD, &path).unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes,
            png_bytes(PAYLOAD).unwrap(),
            "the email's image is the file's"
        );
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        let code = encode(PAYLOAD).unwrap();
        let modules = code.width() as u32;
        assert_eq!(width, (modules + 8) * 8);
        assert_eq!(height, (modules + 8) * 8);

        let mut reader = png::Decoder::new(std::io::BufReader::new(File::open(&path).unwrap()))
            .read_info()
            .unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        let at = |x: u32, y: u32| pixels[(y * width + x) as usize];
        // Quiet zone white, finder corner black.
        assert_eq!(at(0, 0), 255);
        assert_eq!(at(31, 31), 255);
        assert_eq!(at(32, 32), 0);
        assert_eq!(at(39, 39), 0);
        // Every module, 8 by 8 pixels, as the symbol has it.
        let colors = code.to_colors();
        let side = (modules + 8) as usize;
        for y in 0..side {
            for x in 0..side {
                let inside = |v: usize| (QUIET_ZONE..QUIET_ZONE + code.width()).contains(&v);
                let dark = inside(x)
                    && inside(y)
                    && colors[(y - QUIET_ZONE) * code.width() + (x - QUIET_ZONE)] == Color::Dark;
                for (dx, dy) in [(0, 0), (7, 7), (3, 5)] {
                    let px = at((x * 8 + dx) as u32, (y * 8 + dy) as u32);
                    assert_eq!(px, if dark { 0 } else { 255 }, "module ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn png_to_an_unwritable_place_names_the_path() {
        let err = png("BCD", Path::new("/nonexistent-dir/qr.png")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/qr.png"), "{err}");
    }

    #[test]
    fn the_largest_girocode_fits_version_13_and_the_largest_qr_bill_version_25() {
        let version = |bytes: usize| encode(&"a".repeat(bytes)).unwrap().version();
        assert_eq!(version(331), Version::Normal(13));
        assert_eq!(version(332), Version::Normal(14));
        assert_eq!(version(997), Version::Normal(25));
    }

    #[test]
    fn why_byte_mode_is_forced_the_optimiser_would_read_utf8_as_kanji() {
        use qrcode::optimize::{Optimizer, Parser};
        use qrcode::types::Mode;
        let utf8 = "€—€—€—€—€—".as_bytes();
        let segments = Optimizer::new(Parser::new(utf8), Version::Normal(10));
        assert!(segments.into_iter().any(|s| s.mode == Mode::Kanji));
    }
}
