//! The `extends` chain: an image and its parents, linearized parents first,
//! with cycles and unknown images reported.

use std::collections::HashSet;

use super::{Resolver, join_names};
use crate::diag::{Diagnostic, Span, did_you_mean};
use crate::model::Sp;
use crate::repo::Image;

impl<'a> Resolver<'a> {
    pub(super) fn linearize(&mut self, image: &str) -> Vec<&'a Image> {
        let mut chain = Vec::new();
        let mut stack: Vec<(String, Option<Span>)> = Vec::new();
        let mut done = HashSet::new();
        self.visit(image, None, &mut stack, &mut done, &mut chain);
        chain
    }

    fn visit(
        &mut self,
        name: &str,
        at: Option<&Sp<String>>,
        stack: &mut Vec<(String, Option<Span>)>,
        done: &mut HashSet<String>,
        chain: &mut Vec<&'a Image>,
    ) {
        if let Some(pos) = stack.iter().position(|(n, _)| n == name) {
            // Report the cycle the same way whichever image it is reached
            // from: start at its smallest member, point at the `extends`
            // entry that closes it.
            let mut cycle: Vec<&str> = stack[pos..].iter().map(|(n, _)| n.as_str()).collect();
            let min = (0..cycle.len()).min_by_key(|i| cycle[*i]).unwrap_or(0);
            cycle.rotate_left(min);
            let (first, last) = (cycle[0], cycle[cycle.len() - 1]);
            let closing = self
                .repo
                .images
                .get(last)
                .and_then(|img| img.def.extends.iter().find(|e| e.v == first));
            cycle.push(first);
            let mut d = Diagnostic::error("extends-cycle", format!("`extends` cycle: {}", cycle.join(" → ")));
            if let Some(e) = closing {
                d = d.at(e.span.clone(), format!("`{last}` extends `{first}`, closing the cycle"));
            } else if let Some(at) = at {
                d = d.at(at.span.clone(), "closes the cycle");
            }
            self.error(d);
            return;
        }
        if done.contains(name) {
            return;
        }
        let Some(img) = self.repo.images.get(name) else {
            let mut d = Diagnostic::error("unknown-image", format!("unknown image `{name}`"));
            if let Some(at) = at {
                d = d.at(at.span.clone(), "no such image");
            }
            let hint = did_you_mean(name, self.repo.images.keys().map(String::as_str));
            d = match hint {
                Some(s) => d.help(format!("did you mean `{s}`?")),
                None => d.help(format!(
                    "images are files images/NAME.toml; known: {}",
                    join_names(self.repo.images.keys())
                )),
            };
            self.error(d);
            return;
        };
        stack.push((name.to_string(), at.map(|a| a.span.clone())));
        for parent in &img.def.extends {
            self.visit(&parent.v, Some(parent), stack, done, chain);
        }
        stack.pop();
        done.insert(name.to_string());
        chain.push(img);
    }
}
