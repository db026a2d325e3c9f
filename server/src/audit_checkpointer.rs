//! The background task that signs audit checkpoints as the policy falls due, always with
//! the active key, so a rotation (`palisade audit rotate-key`) takes effect without a
//! restart.

use std::sync::Arc;
use std::time::Duration;
use store::Db;
use store::checkpoints::{self, CheckpointPolicy};
use store::signing::{self, KeyPurpose, MasterKey};

/// Signs the head now if anything is unsigned; used at shutdown so the last entries
/// do not wait for the next interval.
pub async fn sign_now(db: &Db, master: &MasterKey) -> Result<(), String> {
    let signer = signing::active_signer(db, master, KeyPurpose::Audit)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no active audit signing key")?;
    checkpoints::checkpoint_if_due(db, &signer, CheckpointPolicy::ALWAYS).await.map_err(|e| e.to_string())?;
    Ok(())
}

pub fn spawn(db: Db, master: Arc<MasterKey>, policy: CheckpointPolicy) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut outage = crate::outage::Outage::new("audit checkpoints");
        loop {
            tick.tick().await;
            let signed = async {
                let signer = signing::active_signer(&db, &master, KeyPurpose::Audit)
                    .await?
                    .ok_or(store::StoreError::NotFound("active audit signing key"))?;
                checkpoints::checkpoint_if_due(&db, &signer, policy).await
            }
            .await;
            outage.record(&signed);
        }
    });
}
