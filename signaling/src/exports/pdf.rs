//! The PDF transcript of one session (F9): a title, a metadata header, every turn with its
//! time and speaker and its text wrapped to the page, "Page i of n" at the foot of each A4
//! page. Written with krilla (TrueType fonts embedded as subsets, with the Unicode map that
//! lets readers and `pdftotext` get the text back). Each character is drawn with the first of
//! [`PdfFonts`] that has a glyph for it (Latin, then CJK), so mixed lines render.

use krilla::Document;
use krilla::geom::Point;
use krilla::page::PageSettings;
use krilla::text::{Font, TextDirection};
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 56.0;
const TITLE_SIZE: f32 = 16.0;
const BODY_SIZE: f32 = 10.5;
const LINE: f32 = 15.0;
/// Turn text is indented under its "[time] Speaker" line.
const INDENT: f32 = 14.0;
/// Room kept at the foot of the page for its number.
const FOOTER: f32 = 40.0;

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("font {0} cannot be read")]
    Font(&'static str),
    #[error("writing the PDF failed: {0}")]
    Write(String),
}

/// The fonts a transcript is drawn with, in order of preference.
#[derive(Clone)]
pub struct PdfFonts {
    faces: Vec<Face>,
}

#[derive(Clone)]
struct Face {
    bytes: &'static [u8],
    font: Font,
}

impl PdfFonts {
    /// `latin` first, `cjk` for what it lacks. Both must be TrueType/OpenType fonts.
    pub fn new(latin: &'static [u8], cjk: &'static [u8]) -> Result<Self, PdfError> {
        let face = |bytes: &'static [u8], name: &'static str| {
            FontRef::new(bytes).map_err(|_| PdfError::Font(name))?;
            let font = Font::new(bytes.into(), 0).ok_or(PdfError::Font(name))?;
            Ok::<_, PdfError>(Face { bytes, font })
        };
        Ok(Self {
            faces: vec![face(latin, "latin")?, face(cjk, "cjk")?],
        })
    }

    /// Index of the face that draws `c` (the first with a glyph; else the first face).
    fn face_for(&self, c: char) -> usize {
        self.faces
            .iter()
            .position(|f| {
                FontRef::new(f.bytes)
                    .ok()
                    .and_then(|r| r.charmap().map(c))
                    .is_some_and(|g| g.to_u32() != 0)
            })
            .unwrap_or(0)
    }

    /// Width of `text` at `size` points, drawn with face `face`.
    fn width(&self, face: usize, text: &str, size: f32) -> f32 {
        let Some(font) = self
            .faces
            .get(face)
            .and_then(|f| FontRef::new(f.bytes).ok())
        else {
            return 0.0;
        };
        let charmap = font.charmap();
        let metrics = font.glyph_metrics(Size::new(size), LocationRef::default());
        text.chars()
            .map(|c| {
                charmap
                    .map(c)
                    .and_then(|g| metrics.advance_width(g))
                    .unwrap_or(size * 0.5)
            })
            .sum()
    }

    /// `text` split into runs of one face each: (face, run).
    fn runs(&self, text: &str) -> Vec<(usize, String)> {
        let mut runs: Vec<(usize, String)> = Vec::new();
        for c in text.chars() {
            let face = self.face_for(c);
            match runs.last_mut() {
                Some((f, run)) if *f == face => run.push(c),
                _ => runs.push((face, c.to_string())),
            }
        }
        runs
    }

    fn text_width(&self, text: &str, size: f32) -> f32 {
        self.runs(text)
            .iter()
            .map(|(f, run)| self.width(*f, run, size))
            .sum()
    }
}

/// One turn as printed.
#[derive(Debug, Clone, PartialEq)]
pub struct PdfTurn {
    /// Start on the session's timeline.
    pub at_ms: u64,
    pub speaker: String,
    pub text: String,
}

/// What a transcript PDF shows.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptPdf {
    pub title: String,
    /// Metadata lines: (label, value), printed "label: value".
    pub header: Vec<(String, String)>,
    pub turns: Vec<PdfTurn>,
}

/// `[mm:ss]` (or `[h:mm:ss]`) of a timeline position.
pub fn timestamp(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("[{h}:{m:02}:{s:02}]")
    } else {
        format!("[{m:02}:{s:02}]")
    }
}

/// Colour of the "[time] Speaker" lines and of the page numbers (a dark blue-grey): the
/// turns' text stays black.
const LABEL_RGB: (u8, u8, u8) = (0x35, 0x4a, 0x6b);

/// One laid-out line: x offset, font size, text.
struct Line {
    x: f32,
    size: f32,
    text: String,
    /// Space before it (points).
    gap: f32,
    /// Drawn in [`LABEL_RGB`] rather than black.
    label: bool,
}

impl TranscriptPdf {
    /// The lines in order, as they will be printed (wrapping included).
    fn lines(&self, fonts: &PdfFonts) -> Vec<Line> {
        let mut out = vec![Line {
            x: 0.0,
            size: TITLE_SIZE,
            text: self.title.clone(),
            gap: 0.0,
            label: false,
        }];
        let width = PAGE_W - 2.0 * MARGIN;
        for (i, (label, value)) in self.header.iter().enumerate() {
            for (j, l) in wrap(fonts, &format!("{label}: {value}"), BODY_SIZE, width)
                .into_iter()
                .enumerate()
            {
                out.push(Line {
                    x: 0.0,
                    size: BODY_SIZE,
                    text: l,
                    gap: if i == 0 && j == 0 { 10.0 } else { 0.0 },
                    label: false,
                });
            }
        }
        for (i, t) in self.turns.iter().enumerate() {
            out.push(Line {
                x: 0.0,
                size: BODY_SIZE,
                text: format!("{} {}", timestamp(t.at_ms), t.speaker),
                gap: if i == 0 { 18.0 } else { 6.0 },
                label: true,
            });
            if t.text.trim().is_empty() {
                continue;
            }
            for l in wrap(fonts, &t.text, BODY_SIZE, width - INDENT) {
                out.push(Line {
                    x: INDENT,
                    size: BODY_SIZE,
                    text: l,
                    gap: 0.0,
                    label: false,
                });
            }
        }
        out
    }

    /// The lines laid out on pages: each with the baseline it is drawn at.
    fn pages(&self, fonts: &PdfFonts) -> Vec<Vec<(f32, Line)>> {
        let mut pages: Vec<Vec<(f32, Line)>> = vec![Vec::new()];
        let mut y = MARGIN;
        let lines = self.lines(fonts);
        let step_of = |l: &Line| l.gap + l.size.max(LINE);
        // A "[time] Speaker" line keeps the first line of its text on its page.
        let keeps: Vec<f32> = (0..lines.len())
            .map(|i| match (lines.get(i), lines.get(i + 1)) {
                (Some(l), Some(next)) if l.label && !next.label => step_of(next),
                _ => 0.0,
            })
            .collect();
        for (line, keep) in lines.into_iter().zip(keeps) {
            let step = step_of(&line);
            if y + step + keep > PAGE_H - FOOTER && pages.last().is_some_and(|p| !p.is_empty()) {
                pages.push(Vec::new());
                y = MARGIN;
            }
            y += step;
            if let Some(p) = pages.last_mut() {
                p.push((y, line));
            }
        }
        pages
    }

    /// Renders the document.
    pub fn render(&self, fonts: &PdfFonts) -> Result<Vec<u8>, PdfError> {
        // Pages first (so each foot can say "of n"), then drawing.
        let pages = self.pages(fonts);
        let total = pages.len();
        let mut doc = Document::new();
        doc.set_metadata(
            krilla::metadata::Metadata::new()
                .title(self.title.clone())
                .creator("Earshot".into()),
        );
        for (n, lines) in pages.iter().enumerate() {
            let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
                .ok_or_else(|| PdfError::Write("page size".into()))?;
            let mut page = doc.start_page_with(settings);
            let mut surface = page.surface();
            for (y, line) in lines {
                set_label_colour(&mut surface, line.label);
                draw(
                    &mut surface,
                    fonts,
                    MARGIN + line.x,
                    *y,
                    line.size,
                    &line.text,
                );
            }
            set_label_colour(&mut surface, true);
            let foot = format!("Page {} of {total}", n + 1);
            let w = fonts.text_width(&foot, 9.0);
            draw(
                &mut surface,
                fonts,
                (PAGE_W - w) / 2.0,
                PAGE_H - FOOTER / 2.0,
                9.0,
                &foot,
            );
            surface.finish();
            page.finish();
        }
        doc.finish().map_err(|e| PdfError::Write(format!("{e:?}")))
    }
}

/// Fills what is drawn next in [`LABEL_RGB`] (`true`) or black.
fn set_label_colour(surface: &mut krilla::surface::Surface<'_>, label: bool) {
    let fill = if label {
        let (r, g, b) = LABEL_RGB;
        krilla::paint::Fill {
            paint: krilla::color::rgb::Color::new(r, g, b).into(),
            ..krilla::paint::Fill::default()
        }
    } else {
        krilla::paint::Fill::default()
    };
    surface.set_fill(Some(fill));
}

/// Draws `text` with its baseline at (x, y), each run in its face.
fn draw(
    surface: &mut krilla::surface::Surface<'_>,
    fonts: &PdfFonts,
    x: f32,
    y: f32,
    size: f32,
    text: &str,
) {
    let mut x = x;
    for (face, run) in fonts.runs(text) {
        if let Some(f) = fonts.faces.get(face) {
            surface.draw_text(
                Point::from_xy(x, y),
                f.font.clone(),
                size,
                &run,
                false,
                TextDirection::Auto,
            );
        }
        x += fonts.width(face, &run, size);
    }
}

/// `text` broken into lines no wider than `width`: at spaces where there are some, anywhere
/// in a word that is wider than a line (CJK text has no spaces). Line breaks in the text are
/// kept; an empty text is one empty line.
fn wrap(fonts: &PdfFonts, text: &str, size: f32, width: f32) -> Vec<String> {
    let mut out = Vec::new();
    for para in text.split('\n') {
        let mut line = String::new();
        for word in para.split(' ') {
            let candidate = if line.is_empty() {
                word.to_string()
            } else {
                format!("{line} {word}")
            };
            if fonts.text_width(&candidate, size) <= width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            // The word alone, broken by characters where it is too wide.
            for c in word.chars() {
                line.push(c);
                if fonts.text_width(&line, size) > width {
                    line.pop();
                    out.push(std::mem::take(&mut line));
                    line.push(c);
                }
            }
        }
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    static LATIN: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
    static CJK: &[u8] = include_bytes!("../../../assets/fonts/DroidSansFallbackFull.ttf");

    fn fonts() -> PdfFonts {
        PdfFonts::new(LATIN, CJK).expect("fonts")
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "[00:00]");
        assert_eq!(timestamp(83_400), "[01:23]");
        assert_eq!(timestamp(3_723_000), "[1:02:03]");
    }

    #[test]
    fn runs_pick_the_face_with_the_glyph() {
        let f = fonts();
        assert_eq!(
            f.runs("café 你好 ok"),
            vec![
                (0, "café ".to_string()),
                (1, "你好".to_string()),
                (0, " ok".to_string())
            ]
        );
    }

    #[test]
    fn wrapping_keeps_every_word_and_fits_the_width() {
        let f = fonts();
        let text = "naïve ".repeat(60) + &"你好世界".repeat(30);
        let lines = wrap(&f, &text, BODY_SIZE, 300.0);
        assert!(lines.len() > 3);
        for l in &lines {
            assert!(f.text_width(l, BODY_SIZE) <= 300.0, "{l}");
        }
        let joined: String = lines.concat().split_whitespace().collect();
        let want: String = text.split_whitespace().collect();
        assert_eq!(joined, want);
    }

    #[test]
    fn bad_font_is_an_error() {
        assert!(PdfFonts::new(b"not a font", CJK).is_err());
    }

    /// The text `pdftotext` gets back, when poppler-utils is installed (the test list of
    /// scripts/install-deps.sh has it).
    fn pdftotext(pdf: &[u8]) -> Option<String> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("t.pdf");
        std::fs::write(&path, pdf).ok()?;
        let out = std::process::Command::new("pdftotext")
            .arg(&path)
            .arg("-")
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn accented_and_cjk_text_comes_back_from_the_pdf() {
        let doc = TranscriptPdf {
            title: "Interview transcript".into(),
            header: vec![("Session".into(), "ses_abc".into())],
            turns: vec![
                PdfTurn {
                    at_ms: 1_000,
                    speaker: "Interviewer".into(),
                    text: "café naïve".into(),
                },
                PdfTurn {
                    at_ms: 5_500,
                    speaker: "Participant".into(),
                    text: "你好世界 and ünïcödé".into(),
                },
            ],
        };
        let pdf = doc.render(&fonts()).expect("pdf");
        assert!(pdf.starts_with(b"%PDF-"));
        // Subsets, not the 4.7 MB of fonts.
        assert!(pdf.len() < 200_000, "{} bytes", pdf.len());
        let Some(text) = pdftotext(&pdf) else {
            panic!("pdftotext (poppler-utils) is needed: scripts/install-deps.sh --test");
        };
        for want in [
            "Interview transcript",
            "Session: ses_abc",
            "[00:01] Interviewer",
            "café naïve",
            "[00:05] Participant",
            "你好世界 and ünïcödé",
            "Page 1 of 1",
        ] {
            assert!(text.contains(want), "{want:?} missing in {text:?}");
        }
    }

    #[test]
    fn a_speaker_line_never_ends_a_page() {
        let f = fonts();
        for n in 40..60 {
            let doc = TranscriptPdf {
                title: "t".into(),
                header: vec![],
                turns: (0..n)
                    .map(|i| PdfTurn {
                        at_ms: i * 1000,
                        speaker: "Participant".into(),
                        text: "word ".repeat(1 + (i as usize * 7) % 40),
                    })
                    .collect(),
            };
            let pages = doc.pages(&f);
            assert!(pages.len() > 1, "{n} turns");
            for p in &pages {
                assert!(
                    p.last().is_some_and(|(_, l)| !l.label),
                    "{n} turns: a page ends with a speaker line"
                );
            }
        }
    }

    #[test]
    fn long_transcripts_get_numbered_pages() {
        let turns = (0..120)
            .map(|i| PdfTurn {
                at_ms: i * 1000,
                speaker: "Participant".into(),
                text: format!("answer number {i}"),
            })
            .collect();
        let doc = TranscriptPdf {
            title: "t".into(),
            header: vec![],
            turns,
        };
        let pdf = doc.render(&fonts()).expect("pdf");
        let text = pdftotext(&pdf).expect("pdftotext");
        let pages = text.matches("Page ").count();
        assert!(pages >= 3, "{pages} pages");
        assert!(text.contains(&format!("Page {pages} of {pages}")));
        let i = text.find("answer number 119").expect("last turn");
        assert!(text.find("answer number 0\n").is_some_and(|j| j < i));
    }
}
