//! Assigns every rendered object to one component wave.

use anyhow::{Result, bail};
use schemas::release::{ObjectSelector, Wave, WaveSpec};

use crate::render::Document;

/// Name of the implicit last wave of objects no declared wave selects.
pub const REST_WAVE: &str = "rest";

fn matches(sel: &ObjectSelector, doc: &Document) -> bool {
    sel.kind.as_deref().is_none_or(|k| k == doc.kind())
        && sel.name.as_deref().is_none_or(|n| n == doc.name())
        && sel
            .labels
            .iter()
            .all(|(k, v)| doc.labels().and_then(|l| l.get(k)).and_then(|x| x.as_str()) == Some(v))
}

/// The declared waves in order, then `rest` with every unmatched object. An object
/// matching two waves is an error naming both.
pub fn assign(specs: &[WaveSpec], docs: &[Document]) -> Result<Vec<Wave>> {
    if specs.iter().any(|w| w.name == REST_WAVE) {
        bail!("wave name {REST_WAVE:?} is reserved for objects no wave selects");
    }
    let mut waves: Vec<Wave> = specs
        .iter()
        .map(|w| Wave {
            name: w.name.clone(),
            select: w.select.clone(),
            documents: vec![],
        })
        .collect();
    let mut rest = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let hits: Vec<usize> = specs
            .iter()
            .enumerate()
            .filter(|(_, w)| w.select.iter().any(|s| matches(s, doc)))
            .map(|(j, _)| j)
            .collect();
        match hits.as_slice() {
            [] => rest.push(i as u32),
            [j] => waves[*j].documents.push(i as u32),
            [a, b, ..] => bail!(
                "{} matches waves {:?} and {:?}; an object belongs to one wave",
                doc.describe(),
                specs[*a].name,
                specs[*b].name
            ),
        }
    }
    for w in &waves {
        if w.documents.is_empty() {
            bail!("wave {:?} selects no object of the render", w.name);
        }
    }
    waves.push(Wave {
        name: REST_WAVE.to_owned(),
        select: vec![],
        documents: rest,
    });
    Ok(waves)
}
