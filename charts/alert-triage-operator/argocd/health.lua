-- Argo CD health of an AlertTriage (triage.dev/v1alpha1), in Lua 5.1 as Argo CD runs it.
-- kstatus conditions decide when the operator writes them (Stalled, Ready, Reconciling); the
-- phase decides otherwise. A proposal waiting for a person is Suspended; a triage that cannot go
-- on without a spec change, or a remediation that failed or could not be verified, is Degraded.
local hs = {}

local function progressing(message)
  hs.status = "Progressing"
  hs.message = message
  return hs
end

if obj.status == nil then
  return progressing("Waiting for the operator to triage this alert")
end

local generation = obj.metadata.generation
local status = obj.status
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  return progressing("Waiting for the operator to triage generation " .. generation)
end

-- Conditions of the current generation, by type (kstatus: an older one is stale).
local conditions = {}
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if generation == nil or c.observedGeneration == nil or c.observedGeneration >= generation then
      conditions[c.type] = c
    end
  end
end

local function said(c, fallback)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local phase = status.phase or "Pending"
local verdict = phase
if status.classification ~= nil and status.classification.category ~= nil then
  verdict = phase .. " (" .. status.classification.category .. ")"
end

if conditions["Stalled"] ~= nil and conditions["Stalled"].status == "True" then
  hs.status = "Degraded"
  hs.message = said(conditions["Stalled"], "Stalled: the spec must change")
  return hs
end

if phase == "AwaitingApproval" then
  hs.status = "Suspended"
  hs.message = "Waiting for approval"
  if status.proposal ~= nil then
    hs.message = "Proposal " .. status.proposal.id .. " to delete pod " .. status.proposal.pod ..
      " waits for approval until " .. status.proposal.expiresAt
  end
  return hs
end

local outcome = nil
if status.remediation ~= nil then
  outcome = status.remediation.outcome
end
if phase == "RemediationFailed" or outcome == "Failed" or outcome == "Unverified" then
  hs.status = "Degraded"
  hs.message = "Remediation " .. (outcome or "failed")
  if status.remediation ~= nil and status.remediation.message ~= nil and status.remediation.message ~= "" then
    hs.message = hs.message .. ": " .. status.remediation.message
  end
  return hs
end

local ready = conditions["Ready"]

-- Finished, but a person must look (no evidence, say): Healthy, and the message says so.
local required = conditions["ActionRequired"]
if required ~= nil and required.status == "True" then
  verdict = verdict .. "; " .. said(required, "action required")
end

if ready ~= nil then
  if ready.status == "True" then
    hs.status = "Healthy"
    hs.message = verdict
    return hs
  end
  local reconciling = conditions["Reconciling"]
  if reconciling ~= nil and reconciling.status == "True" then
    return progressing(said(reconciling, verdict))
  end
  return progressing(said(ready, verdict))
end

if phase == "Remediated" or phase == "ApiKeyRotationRequired" or phase == "Escalated" or phase == "NoAction" then
  hs.status = "Healthy"
  hs.message = verdict
  return hs
end
return progressing(verdict)
