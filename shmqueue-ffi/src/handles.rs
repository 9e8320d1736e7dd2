//! The handle table: C holds ids, never pointers, so a stale, zeroed or
//! wrong-kind handle is an error code instead of a use-after-free.
//!
//! One process-wide map from id to object, behind a mutex held only to look
//! an id up (or insert, or remove) and clone an `Arc`; an endpoint's own
//! call runs outside it, under the endpoint's mutex, so a thread blocked in
//! `shmq_pop` blocks nobody else. Ids count up from 1 and are never reused.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{shmq_status, Fail};

struct Table {
    next: u64,
    objects: HashMap<u64, Arc<dyn Any + Send + Sync>>,
}

static TABLE: Mutex<Option<Table>> = Mutex::new(None);

fn table() -> MutexGuard<'static, Option<Table>> {
    // A panic under this lock (caught at the boundary) leaves the map
    // consistent: every operation on it is a single insert/get/remove.
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Store `obj`; its new id (never 0).
pub(crate) fn insert<T: Any + Send + Sync>(obj: T) -> u64 {
    let mut t = table();
    let t = t.get_or_insert_with(|| Table {
        next: 1,
        objects: HashMap::new(),
    });
    let id = t.next;
    t.next += 1;
    t.objects.insert(id, Arc::new(obj));
    id
}

fn invalid(what: &str, id: u64) -> Fail {
    Fail::new(
        shmq_status::SHMQ_ERR_INVALID_HANDLE,
        format!("invalid {what} handle (id {id}): zero, already freed, or of another kind"),
    )
}

/// The object behind `id`, if it is a `T`.
pub(crate) fn get<T: Any + Send + Sync>(id: u64, what: &str) -> Result<Arc<T>, Fail> {
    let obj = table()
        .as_ref()
        .and_then(|t| t.objects.get(&id).cloned())
        .ok_or_else(|| invalid(what, id))?;
    obj.downcast::<T>().map_err(|_| invalid(what, id))
}

/// Remove `id` if it is a `T`. The object is dropped when the last call
/// still using it returns.
pub(crate) fn remove<T: Any + Send + Sync>(id: u64, what: &str) -> Result<(), Fail> {
    let obj = {
        let mut t = table();
        let t = t.as_mut().ok_or_else(|| invalid(what, id))?;
        match t.objects.get(&id) {
            Some(o) if o.is::<T>() => t.objects.remove(&id),
            _ => return Err(invalid(what, id)),
        }
    };
    // Dropped here, outside the table lock: an endpoint's drop releases its
    // role and may take a while.
    drop(obj);
    Ok(())
}

/// Lock an endpoint's mutex; a panic caught while it was held leaves the
/// endpoint as the library left it, which is always consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
