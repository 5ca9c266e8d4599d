//! `switchback check --connect`: reach the cluster, name its members and the prefix's version.

use super::Shared;

impl Shared {
    /// `etcd: 3 members (a, b, c); /prefix at version 7` (or "holds no shared state yet").
    ///
    /// # Errors
    /// The cluster does not answer, or the shared state there is not usable.
    pub(crate) fn describe(&self) -> Result<String, String> {
        let members = self.block(|mut client| async move {
            let list = client.member_list().await?;
            Ok(list
                .members()
                .iter()
                .map(|m| match m.name() {
                    "" => m.client_urls().join(" "),
                    name => name.to_string(),
                })
                .collect::<Vec<_>>())
        })?;
        let fetched = self.fetch()?;
        let at = match &fetched.control {
            Some((saved, _)) => format!("at version {}", saved.version),
            None => "holds no shared state yet".into(),
        };
        Ok(format!(
            "etcd: {} members ({}); {} {at}",
            members.len(),
            members.join(", "),
            self.prefix()
        ))
    }
}
