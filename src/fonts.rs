//! The fonts PDF transcripts are drawn with, built into the binary so a transcript renders
//! the same everywhere (see `assets/fonts/README.md` for where they come from and their
//! licences): DejaVu Sans for Latin and most alphabets, Droid Sans Fallback for CJK.

use earshot_signaling::exports::pdf::{PdfError, PdfFonts};

static LATIN: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static CJK: &[u8] = include_bytes!("../assets/fonts/DroidSansFallbackFull.ttf");

pub fn pdf_fonts() -> Result<PdfFonts, PdfError> {
    PdfFonts::new(LATIN, CJK)
}
