//! A SQLite VFS whose only file is an object's database held as pages in memory: SQLite's
//! writes land in those pages and are marked dirty, and the host takes the dirty pages into
//! the event's write set at its end. Nothing is made durable here: the committer does that,
//! with the event's other writes, in one batch.

use bytes::Bytes;
use rusqlite::ffi;
use std::collections::{BTreeSet, HashMap};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// The page size of every object's database: fixed at creation (`PRAGMA page_size` is not
/// allowed to objects), so a page is always one stored value.
pub const PAGE_SIZE: usize = crate::backend::SQL_PAGE_SIZE;

/// The VFS's name, given to `sqlite3_open_v2`.
pub const VFS_NAME: &CStr = c"dohost";

/// One database file: its pages (page number − 1 is the index), and those written since the
/// dirty set was last taken.
#[derive(Default)]
pub struct PageFile {
    pages: Vec<Bytes>,
    dirty: BTreeSet<u32>,
}

impl PageFile {
    pub fn new(pages: Vec<Bytes>) -> Self {
        PageFile {
            pages,
            dirty: BTreeSet::new(),
        }
    }

    /// Pages in the file.
    pub fn page_count(&self) -> u32 {
        self.pages.len() as u32
    }

    /// The pages written since the last call (by index), with their contents now.
    pub fn take_dirty(&mut self) -> Vec<(u32, Bytes)> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|i| self.pages.get(i as usize).map(|p| (i, p.clone())))
            .collect()
    }

    /// Forgets what was written (a rolled-back transaction put the old pages back).
    pub fn forget_dirty(&mut self) {
        self.dirty.clear();
    }

    fn read(&self, buf: &mut [u8], offset: usize) -> bool {
        let mut done = 0;
        while done < buf.len() {
            let at = offset + done;
            let (index, within) = (at / PAGE_SIZE, at % PAGE_SIZE);
            let n = (PAGE_SIZE - within).min(buf.len() - done);
            match self.pages.get(index) {
                Some(page) => buf[done..done + n].copy_from_slice(&page[within..within + n]),
                None => {
                    // SQLite wants the rest zeroed on a short read.
                    buf[done..].fill(0);
                    return false;
                }
            }
            done += n;
        }
        true
    }

    fn write(&mut self, data: &[u8], offset: usize) {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done;
            let (index, within) = (at / PAGE_SIZE, at % PAGE_SIZE);
            let n = (PAGE_SIZE - within).min(data.len() - done);
            while self.pages.len() <= index {
                self.pages.push(Bytes::from_static(&[0; PAGE_SIZE]));
            }
            self.pages[index] = if n == PAGE_SIZE {
                Bytes::copy_from_slice(&data[done..done + n])
            } else {
                let mut page = self.pages[index].to_vec();
                page[within..within + n].copy_from_slice(&data[done..done + n]);
                Bytes::from(page)
            };
            self.dirty.insert(index as u32);
            done += n;
        }
    }

    fn truncate(&mut self, size: usize) {
        let keep = size.div_ceil(PAGE_SIZE);
        self.pages.truncate(keep);
        self.dirty.retain(|&i| (i as usize) < keep);
    }

    fn size(&self) -> usize {
        self.pages.len() * PAGE_SIZE
    }
}

/// A database file shared by the connection (through the VFS) and the host.
pub type SharedFile = Arc<Mutex<PageFile>>;

pub fn lock(file: &Mutex<PageFile>) -> MutexGuard<'_, PageFile> {
    // Only page copies run under the lock; a panic there leaves whole pages.
    file.lock().unwrap_or_else(|p| p.into_inner())
}

/// Files handed to `sqlite3_open_v2` by name, taken by `x_open`.
fn opening() -> &'static Mutex<HashMap<String, SharedFile>> {
    static OPENING: OnceLock<Mutex<HashMap<String, SharedFile>>> = OnceLock::new();
    OPENING.get_or_init(Default::default)
}

/// Makes `file` openable under a fresh name; answers the name. `x_open` takes it out again.
pub fn offer(file: SharedFile) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("dohost-object-{n}");
    opening()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.clone(), file);
    name
}

/// Takes back a file offered but never opened (the open failed before reaching the VFS).
pub fn withdraw(name: &str) {
    opening()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(name);
}

/// Registers the VFS with SQLite (once per process).
pub fn register() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
            iVersion: 2,
            szOsFile: std::mem::size_of::<File>() as c_int,
            mxPathname: 256,
            pNext: std::ptr::null_mut(),
            zName: VFS_NAME.as_ptr(),
            pAppData: std::ptr::null_mut(),
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: None,
            xDlError: None,
            xDlSym: None,
            xDlClose: None,
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: Some(x_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        }));
        // SAFETY: the VFS is leaked, so it lives as long as SQLite may use it.
        let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
        assert_eq!(rc, ffi::SQLITE_OK, "registering dohost's SQLite VFS");
    });
}

/// SQLite's file object with the page file behind it (SQLite allocates `szOsFile` bytes).
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    data: *const Mutex<PageFile>,
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_lock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// SAFETY (all callbacks): SQLite passes the file it opened through `x_open`, whose `data`
/// is a live `Arc` until `x_close`.
unsafe fn file<'a>(f: *mut ffi::sqlite3_file) -> &'a Mutex<PageFile> {
    unsafe { &*(*(f as *mut File)).data }
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    f: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    // Journals and temporary files stay in memory (journal_mode and temp_store): the only
    // file is the main database.
    if flags & ffi::SQLITE_OPEN_MAIN_DB == 0 || name.is_null() {
        return ffi::SQLITE_CANTOPEN;
    }
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    let Some(shared) = opening()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(name.as_ref())
    else {
        return ffi::SQLITE_CANTOPEN;
    };
    unsafe {
        let file = f as *mut File;
        (*file).base.pMethods = &METHODS;
        (*file).data = Arc::into_raw(shared);
        if !out_flags.is_null() {
            *out_flags = flags;
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_close(f: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let file = f as *mut File;
        if !(*file).data.is_null() {
            drop(Arc::from_raw((*file).data));
            (*file).data = std::ptr::null();
        }
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let buf = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, amount as usize) };
    if lock(unsafe { file(f) }).read(buf, offset as usize) {
        ffi::SQLITE_OK
    } else {
        ffi::SQLITE_IOERR_SHORT_READ
    }
}

unsafe extern "C" fn x_write(
    f: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    let data = unsafe { std::slice::from_raw_parts(data as *const u8, amount as usize) };
    lock(unsafe { file(f) }).write(data, offset as usize);
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_truncate(f: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    lock(unsafe { file(f) }).truncate(size.max(0) as usize);
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_sync(_f: *mut ffi::sqlite3_file, _flags: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_size(
    f: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    unsafe { *size = lock(file(f)).size() as ffi::sqlite3_int64 };
    ffi::SQLITE_OK
}

/// One connection per file, in exclusive locking mode: every lock is granted.
unsafe extern "C" fn x_lock(_f: *mut ffi::sqlite3_file, _level: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_check_reserved_lock(_f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_file_control(
    _f: *mut ffi::sqlite3_file,
    _op: c_int,
    _arg: *mut c_void,
) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn x_sector_size(_f: *mut ffi::sqlite3_file) -> c_int {
    PAGE_SIZE as c_int
}

unsafe extern "C" fn x_device_characteristics(_f: *mut ffi::sqlite3_file) -> c_int {
    ffi::SQLITE_IOCAP_SAFE_APPEND
        | ffi::SQLITE_IOCAP_SEQUENTIAL
        | ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE
        | ffi::SQLITE_IOCAP_UNDELETABLE_WHEN_OPEN
}

unsafe extern "C" fn x_delete(
    _vfs: *mut ffi::sqlite3_vfs,
    _name: *const c_char,
    _sync_dir: c_int,
) -> c_int {
    ffi::SQLITE_OK
}

/// No file but the open database exists (so no hot journal is ever found).
unsafe extern "C" fn x_access(
    _vfs: *mut ffi::sqlite3_vfs,
    _name: *const c_char,
    _flags: c_int,
    out: *mut c_int,
) -> c_int {
    unsafe { *out = 0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    let name = unsafe { CStr::from_ptr(name) }.to_bytes_with_nul();
    if name.len() > n_out as usize {
        return ffi::SQLITE_CANTOPEN;
    }
    unsafe { std::ptr::copy_nonoverlapping(name.as_ptr() as *const c_char, out, name.len()) };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_randomness(
    _vfs: *mut ffi::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    let out = unsafe { std::slice::from_raw_parts_mut(out as *mut u8, n.max(0) as usize) };
    let _ = getrandom::fill(out);
    n
}

unsafe extern "C" fn x_sleep(_vfs: *mut ffi::sqlite3_vfs, micros: c_int) -> c_int {
    // Nothing is ever locked by another connection: there is nothing to wait for.
    micros
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

unsafe extern "C" fn x_current_time(_vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    unsafe { *out = 2_440_587.5 + unix_ms() as f64 / 86_400_000.0 };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_current_time_int64(
    _vfs: *mut ffi::sqlite3_vfs,
    out: *mut ffi::sqlite3_int64,
) -> c_int {
    // Julian day in milliseconds, as SQLite's own VFSes answer.
    unsafe { *out = 210_866_760_000_000 + unix_ms() };
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_get_last_error(
    _vfs: *mut ffi::sqlite3_vfs,
    _n: c_int,
    _out: *mut c_char,
) -> c_int {
    0
}
