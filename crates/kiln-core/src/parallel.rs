//! Order-preserving parallel map over a slice, spread over the cores with
//! scoped threads. Used where independent items are many (images to check,
//! files to read); below `serial_below` items it runs on the calling thread.

/// Applies `f` to every item; the results are in the items' order.
pub fn map_in_order<T: Sync, R: Send>(items: &[T], serial_below: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16);
    if threads == 1 || items.len() < serial_below.max(2) {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order() {
        let items: Vec<u32> = (0..1000).collect();
        assert_eq!(
            map_in_order(&items, 16, |x| x * 2),
            items.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
        assert_eq!(map_in_order(&items[..3], 16, |x| x + 1), [1, 2, 3]);
    }
}
