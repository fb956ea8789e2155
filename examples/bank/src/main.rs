//! `txgate-bank`: runs the demo bank. Wiring only; the bank is in the library.
//!
//! ```text
//! txgate-bank --listen 127.0.0.1:7001 --name bank_a --accounts alice=1000,bob=1000
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

// mimalloc, as in the gateway: the bank allocates per call, and under a load test glibc's
// malloc took about a third of its CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The demo bank: accounts, saga and TCC endpoints with the barrier, and fault injection.
#[derive(Debug, Parser)]
#[command(name = "txgate-bank", version, about)]
struct Args {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:7001")]
    listen: SocketAddr,
    /// The bank's name, shown in answers.
    #[arg(long, default_value = "bank")]
    name: String,
    /// Opening balances, `id=amount` separated by commas (applied only to new accounts).
    #[arg(long, value_delimiter = ',')]
    accounts: Vec<String>,
    /// Journal file: keeps the books across restarts.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Idempotency keys, and barrier records, remembered (oldest forgotten first).
    #[arg(long, default_value_t = 2_000_000)]
    keys_max: usize,
    /// Runtime worker threads. One by default: every call takes the ledger's lock anyway, and a
    /// second worker mostly costs a thread wake-up per call (about a sixth of the bank's CPU
    /// under the saga benchmark).
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let accounts = args
        .accounts
        .iter()
        .map(|entry| parse_account(entry))
        .collect::<Result<Vec<_>, _>>()?;
    let bank =
        txgate_bank::http::Bank::open(&args.name, args.data.as_deref(), args.keys_max, &accounts)
            .map_err(|e| format!("bank: cannot open the journal: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(txgate_bank::http::serve(args.listen, Arc::new(bank)))
}

fn parse_account(entry: &str) -> Result<(String, i64), String> {
    let (id, amount) = entry
        .split_once('=')
        .ok_or_else(|| format!("`{entry}`: accounts are given as id=amount"))?;
    let amount = amount
        .parse()
        .map_err(|_| format!("`{entry}`: the amount must be a whole number"))?;
    Ok((id.to_string(), amount))
}
