import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { SaliencyComputer, avgPool4Pad1, resizeBilinear } from '../../server/sampler/saliency.js';
import type { LatentShape } from '../../server/sampler/guidance.js';

/**
 * Deterministic inputs shared with the NumPy reference that produced the expected arrays below
 * (a float64 implementation of the spec's Appendix A plus abs/scale/channel-mean/softmax, in the
 * original code's order: blur each channel, then average). The reference casts these values to
 * float32 first, exactly as a Float32Array does, and computes everything else in float64.
 */
function hashValue(i: number, seed: number): number {
  return ((i * i * 31 + i * 7919 + seed * 104729) % 1009) / 504 - 1;
}

function hashArray(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = hashValue(i, seed);
  return out;
}

/** |actual - expected| <= rtol*|expected| + atol, element-wise, with a useful failure message. */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number): void {
  assert.equal(actual.length, expected.length, 'length');
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    const tol = rtol * Math.abs(e) + atol;
    if (!(Math.abs(a - e) <= tol)) assert.fail(`index ${i}: got ${a}, expected ${e} (|diff| ${Math.abs(a - e)} > ${tol})`);
  }
}

// Expected values: NumPy float64 reference, see hashValue().
const POOL_2x6x5 = [
  0.15228174813091755, 0.11247520055621862, 0.15525793936103582, 0.028769844211637974,
  0.0602678582072258, -0.039558528922498226, -0.05034721735864878, -0.14360118564218283,
  -0.13281250093132257, -0.23970734048634768, -0.13591269683092833, -0.16480654384940863,
  -0.2715773833915591, -0.36743551678955555, -0.2741815485060215, -0.25682043470442295,
  -0.2836061529815197, -0.3189484132453799, -0.2686011912301183, -0.20808531623333693,
  -0.040054560638964176, -0.13640872482210398, -0.20362102892249823, -0.1408730149269104,
  -0.03323412500321865, -0.15414186008274555, -0.2281746007502079, -0.20684523601084948,
  -0.02554563246667385, -0.17001487500965595, -0.1294642835855484, -0.1524057537317276,
  0.16158234514296055, 0.011656753718852997, 0.04166667070239782, -0.043650790117681026,
  0.13219246175140142, 0.034474209882318974, 0.09995039831846952, -0.019841267727315426,
];

const RESIZE_2x6x5_TO_7x9 = [
  0.591269850730896, 0.5105820198853811, 0.37610230180952287, 0.2962963018152449,
  0.230158731341362, 0.23236331674787736, 0.24823633167478776, 0.31878306468327844,
  0.3611111044883728, 0.6068594072546277, 0.6872637931789671, 0.821271103052866,
  0.3108465707018262, -0.36068592220544826, -0.08999432185812618, 0.19436571191227625,
  0.5333994793749993, 0.7368197398526328, 0.026927437101091717, 0.283068780388151,
  0.7099710191999163, 0.30177626723334905, -0.31519273242780144, -0.46660052440942273,
  -0.4613410172954437, 0.17058768620093695, 0.5497449082987649, -0.2152777761220932,
  -0.11706349253654479, 0.04662698010603586, -0.17989418572849697, -0.5039682611823082,
  -0.7597001724772983, -0.8905423151122199, -0.5218253831068673, -0.300595223903656,
  -0.40575395950249266, -0.4654667391663506, -0.5649880386061139, -0.6098356123954531,
  -0.6410147547721863, -0.6038517229377277, -0.5530202653672959, -0.4475151048529714,
  -0.38421200854437687, -0.8304988529000963, -0.7144746773299716, -0.5211010513797638,
  -0.46371883414094406, -0.44033446907997137, -0.1102765189513329, 0.18578357119408864,
  0.3458522214066414, 0.44189341153417294, -0.5873016119003296, -0.31018520394961036,
  0.1516754759682549, -0.221560839149687, -0.8035714030265808, -0.20502644446161084,
  0.1847442653444078, -0.26058201988538127, -0.5277777910232544, 0.795634925365448,
  0.6104497363169988, 0.3018077545695835, 0.047839504149225026, -0.1924603134393692,
  -0.364417983425988, -0.5227072238922119, -0.6263227462768555, -0.6884920597076416,
  -0.42035146696226955, -0.44444443533817934, -0.4845993826313625, -0.47008062461538924,
  -0.44189344027212696, -0.34536407580451367, -0.2351662844182953, -0.07029478535765679,
  0.028628114078726175, 0.23015874624252308, -0.04719386072385892, -0.5094482056678288,
  -0.34503337693592867, -0.02395125478506091, -0.349521282646391, -0.5184240196905439,
  -0.060657593465986454, 0.2140022622687476, 0.074404776096344, 0.06812170147895813,
  0.05764991044998169, 0.10185185074806213, 0.1597222238779068, -0.2701719469494288,
  -0.5751763507723807, -0.3806216865777968, -0.2638888880610466, -0.7446145032133376,
  -0.24149659559840247, 0.597033250426489, 0.6004661047269428, 0.39512471109628683,
  -0.13909359678389513, -0.5801996626551189, -0.6488567604905083, -0.6900510191917419,
  -0.7969104200601577, -0.26105441011133634, 0.6320389398033655, 0.8807004309362834,
  0.9682539573737553, 0.011936258938577804, -0.7082703335890693, -0.48403250248659196,
  -0.34948980382510575, -0.2123015820980072, -0.03968253731727599, 0.2480158706506093,
  0.5903880165682899, 0.9464285969734192, 0.2585979004700981, -0.1931216849221123,
  0.29960317413012216, 0.5952380895614624,
];

const RESIZE_2x6x5_TO_4x3 = [
  0.5667989477515221, 0.0421627052128315, 0.38707010572155326, 0.20767195522785192,
  -0.2807539589703083, 0.10036376242836353, -0.40558862189451855, -0.690972238779068,
  -0.6073081853489081, -0.43882276366154355, -0.6879960149526596, -0.06762567038337403,
  0.2748015907903512, -0.2718253992497921, -0.4494047587116559, 0.06696430345376331,
  0.0570436455309391, -0.08432539304097467, -0.22817460199197126, 0.2986111082136631,
  -0.6407076666752498, -0.11011904229720429, 0.9533730298280716, 0.05026454975207667,
];

const RESIZE_STRIP_3x63_TO_2x64 = [
  0.3749999925494194, 0.07563709298119647, -0.1079101531431661, -0.17228577326750383,
  -0.11748977065872168, 0.05647786049667047, 0.3496171381266322, -0.5636044562343159,
  -0.20807756347494433, 0.4425765815540217, -0.46113125496776775, 0.09941561779123731,
  -0.5033869582402986, 0.2329411648606765, -0.0689561667641101, -0.29469324523597606,
  -0.659326940192841, 0.06492202373920009, 0.5838022194802761, 0.6001441394910216,
  0.590983055124525, 0.7009935978567228, -0.04344540572492406, -0.22295851475792006,
  0.244566906534601, -0.3730546231381595, -0.4648515027947724, 0.36018879094626755,
  0.1939251527946908, -0.44359576448914595, -0.21511114039458334, 0.08562360628275201,
  -0.21784320000733715, -0.648476254180423, -0.037148112431168556, 0.8497566458536312,
  0.7766384692513384, 0.20098199741914868, -0.5135711174225435, -0.22917440853780136,
  0.1743939122534357, -0.006688685098197311, -0.6629386899294332, 0.09814452682621777,
  0.3684198163682595, -0.02415829521487467, 0.5470222662261222, -0.056877020571846515,
  -0.2991768914507702, -0.4535861404729076, 0.43787590973079205, 0.5765516613610089,
  0.4394763602540479, 0.42157273137854645, 0.522840727964649, 0.5438639308958955,
  -0.41859654545623926, 0.04018631993676536, 0.4460952879162505, -0.6867172055935953,
  0.04746790984063409, -0.45598881610203534, 0.08251567074330524, -0.220238097012043,
  -0.1354166716337204, 0.6536807295051403, 0.12446521784295328, -0.3207697879115585,
  -0.6468331628129818, 0.5187290532630868, 0.5600430794875138, 0.5914946032207808,
  0.7421177624128177, -0.2666984371608123, -0.5189926084131002, -0.09296720559359528,
  0.1315995631448459, -0.40444027214107336, -0.24260991010669386, -0.5090254522656323,
  -0.14013284427346662, -0.5005657861474901, 0.294356080587022, 0.3638625349558424,
  -0.026157927903113887, -0.2970067630521953, -0.44868395786033943, -0.4811895488528535,
  -0.39452349627390504, -0.48976546281483024, -0.364172556088306, 0.08000836972496472,
  0.36574202435440384, 0.01599314372288063, -0.13638160133268684, -0.21650622895685956,
  -0.1618187294661766, -0.21083673676184844, 0.019632018986158073, 0.5256773979926948,
  0.07169983608764596, -0.2631060950807296, -0.4787403936497867, -0.5752030590665527,
  -0.5524941207841039, -0.5865691765211523, -0.6500573441153392, -0.2698335241875611,
  0.0770670585334301, -0.08639089742791839, -0.5529707623063587, -0.05970207424252294,
  0.4315243749297224, -0.10374426533235237, 0.4068584105698392, 0.16467479226412252,
  -0.3532598691745079, -0.5056850009932532, 0.4698738244769629, 0.30945405903548817,
  0.2682059097387537, 0.3461293920991011, 0.5002131304354407, 0.2534218562650494,
  -0.70705451030517, -0.17199512050137855, 0.02084108770941384, 0.8065476343035698,
];

const SAL_2x3x8x7_S10_K1 = [
  0.0020944131127721886, 0.006848849280012853, 0.009461301009855873, 0.00836649767445574,
  0.00807764016426413, 0.006848849124537212, 0.0020944130652269426, 0.0058394590857245325,
  0.026320043081904936, 0.039685035306012376, 0.03509292802314835, 0.029374464180629358,
  0.01764872360459668, 0.0039156090696202675, 0.006247433921440577, 0.030323222497619238,
  0.046653728491814504, 0.04125524715717865, 0.03549365992599559, 0.021957431663681862,
  0.004523846481493508, 0.006643627195893835, 0.02892482999734341, 0.04320230091489061,
  0.04093937795035477, 0.03514464234081187, 0.019695790399863453, 0.004523846423891707,
  0.007398378046602568, 0.02499480785792092, 0.0373323960700588, 0.040939377267480516,
  0.034875558572948454, 0.017019719596944035, 0.005037779067601769, 0.007398377904490616,
  0.018932450333482734, 0.027271363369685657, 0.031524703068109686, 0.028621225717158794,
  0.015987183849966693, 0.006247433674311114, 0.006403655726556371, 0.013815792921979425,
  0.017039329427812208, 0.017039329382530916, 0.016760993230882204, 0.01319313857766676,
  0.0061150538287036765, 0.0034252398437396537, 0.006272918055284662, 0.0073983779284835394,
  0.007398377941812942, 0.00677623624976871, 0.004905183804449722, 0.0026784075385319524,
  0.0018832407448486422, 0.006158303582503782, 0.007263199670267143, 0.005201943986448727,
  0.004848945219462768, 0.004815559110437091, 0.0014726226150603456, 0.0052506867205685155,
  0.02022742355717399, 0.024946937856328903, 0.017867135790532864, 0.01665468978468268,
  0.015817076128383012, 0.00410583737225726, 0.00665242525821682, 0.02040471397632947,
  0.032767148362649996, 0.028129145647876524, 0.021875498785730856, 0.0159557114691926,
  0.005201943928918059, 0.006652425114299267, 0.018083272979854965, 0.027277511401700975,
  0.024683766468699315, 0.0199043910451809, 0.014140433263644038, 0.00520194399956976,
  0.008249782869200584, 0.02242536722513672, 0.029456708421880872, 0.027487971665971965,
  0.026655750131375243, 0.021746420812202148, 0.008000013916465029, 0.011748653735520947,
  0.03392437741217917, 0.043117249712360646, 0.04194979268059674, 0.044561167103860835,
  0.03720208478632783, 0.012883785812297446, 0.010981433882041902, 0.03487048458542936,
  0.039606908505431346, 0.03568372884149391, 0.036276299434360566, 0.0272673959166521,
  0.008587064646623614, 0.003938662652141786, 0.010616430073980486, 0.010141221428019764,
  0.008507350353276313, 0.009288429567759176, 0.00830164530801878, 0.0030798846785755943,
];

const SAL_2x3x8x7_S7_5_K0_25 = [
  0.012559659131594157, 0.0156840047160303, 0.016663623660610468, 0.01628379421136287,
  0.016176870422577556, 0.01568400464927235, 0.01255965907813478, 0.015222063481205037,
  0.020187493472615527, 0.021803247368567938, 0.021306265700027183, 0.02060739182640466,
  0.0187299840096631, 0.014123051283399761, 0.015416036357926242, 0.020730584209852507,
  0.022474749227271166, 0.021962461403262856, 0.02135167422362065, 0.019513051970970315,
  0.014510633930693401, 0.01559479419393779, 0.020547876195879222, 0.02215318641778402,
  0.02193083386482365, 0.021312149256956476, 0.019119374395827372, 0.014510633896050371,
  0.01591262249703133, 0.019992886500824, 0.021554837950591446, 0.021930833796234422,
  0.02128145819565818, 0.01860296794253453, 0.01480636656351384, 0.015912622439720445,
  0.018978196650509913, 0.020322339247970653, 0.020882174755834634, 0.020507263200751195,
  0.01838594288970726, 0.01541603624358659, 0.015487592310426328, 0.01788953811907754,
  0.018606984941951902, 0.01860698493268054, 0.01854961353030671, 0.017735520385748296,
  0.015354253828096508, 0.013773148266567368, 0.015427807637860728, 0.015912622449396306,
  0.015912622454771787, 0.015652691060896208, 0.014732502674215985, 0.01315241597721357,
  0.012229881570600792, 0.015272191509354988, 0.01575211606319307, 0.014796481980812081,
  0.014602804492517003, 0.01458389959983738, 0.011678701438119691, 0.0148223794275397,
  0.019087157747873, 0.019852634163884685, 0.01864823386914937, 0.01840413917878744,
  0.01822693184329411, 0.014154359865932227, 0.01549480649245819, 0.019118414672045232,
  0.020894027048975125, 0.02030459155841358, 0.019369549701845044, 0.018256780279746976,
  0.014796481950129387, 0.01549480642960589, 0.018690324897658896, 0.020187883788589572,
  0.019813196608538187, 0.0190296291163688, 0.01784798390034219, 0.014796481987809888,
  0.0161328233474605, 0.019459921066547977, 0.020480919315095082, 0.020216997686887575,
  0.020100793480409572, 0.01934806850407297, 0.016040094418848756, 0.01723852788497658,
  0.021030441245542018, 0.02199755834428508, 0.021884631953004427, 0.02213383971442392,
  0.021397289905793433, 0.017539231554741515, 0.01702162342566865, 0.021139186870641754,
  0.02165007765327522, 0.021230761636457738, 0.021296425460584, 0.020186479877929216,
  0.0162544879741402, 0.014044468337834605, 0.016914079814062656, 0.016769469769301406,
  0.0162260885198025, 0.016495541851900372, 0.016151791092763178, 0.013411508110126692,
];

/** [sample, y, x, expected probability] */
const BIG_SAMPLES: ReadonlyArray<readonly [number, number, number, number]> = [
  [0, 0, 0, 1.9859209235330668e-05],
  [0, 0, 63, 1.6513959750908138e-05],
  [0, 63, 0, 1.9859209069884164e-05],
  [0, 63, 63, 1.373221053200956e-05],
  [0, 31, 32, 0.0006888822104716967],
  [1, 17, 5, 0.00017431861192643104],
  [1, 40, 50, 0.0001657423745969233],
  [1, 63, 63, 1.626468868204034e-05],
  [1, 1, 62, 0.00022912116156737888],
];

/** per sample: sum over p of prob[p] * (p % 97) */
const BIG_CHECKSUMS = [47.57630011889569, 48.09749540975989];

const BIG_MAX = [0.0010126315278116036, 0.0010155666246200452];

const BIG_ARGMAX = [580, 765];

/** Probability-map sizes: values ~1/(H*W), so the tolerance is relative with a negligible floor. */
const P_RTOL = 1e-6;
const P_ATOL = 1e-12;
/** Pool/resize values are O(1) and may cross zero, so a small absolute floor is added. */
const V_RTOL = 1e-6;
const V_ATOL = 1e-7;

function saliency(shape: LatentShape, cond: Float32Array, uncond: Float32Array, scale: number, k: number): Float32Array {
  const out = new Float32Array(shape.batch * shape.height * shape.width);
  new SaliencyComputer(shape).compute(out, cond, uncond, scale, k);
  return out;
}

function entropy(p: ArrayLike<number>, start: number, n: number): number {
  let h = 0;
  for (let i = start; i < start + n; i++) {
    const v = p[i]!;
    if (v > 0) h -= v * Math.log(v);
  }
  return h;
}

describe('avgPool4Pad1', () => {
  it('matches the reference on 2 planes of 6x5 (zero pad 1, divisor 16)', () => {
    const out = new Float32Array(2 * 5 * 4);
    avgPool4Pad1(out, hashArray(2 * 6 * 5, 1), 2, 6, 5);
    assertClose(out, POOL_2x6x5, V_RTOL, V_ATOL);
  });

  it('darkens borders because the padded zeros count', () => {
    const src = new Float32Array(5 * 5).fill(1);
    const out = new Float32Array(4 * 4);
    avgPool4Pad1(out, src, 1, 5, 5);
    // Corner windows cover 3x3 real pixels, edge windows 3x4, interior windows 4x4.
    assert.equal(out[0], 9 / 16);
    assert.equal(out[1], 12 / 16);
    assert.equal(out[5], 1);
    assert.equal(out[15], 9 / 16);
  });

  it('accepts float64 work buffers and the 2x2 minimum', () => {
    const out = new Float64Array(1);
    avgPool4Pad1(out, Float64Array.of(1, 2, 3, 4), 1, 2, 2);
    assert.equal(out[0], 10 / 16);
  });

  it('rejects wrong lengths and planes smaller than 2x2', () => {
    assert.throws(() => avgPool4Pad1(new Float32Array(20), new Float32Array(29), 1, 6, 5), RangeError);
    assert.throws(() => avgPool4Pad1(new Float32Array(21), new Float32Array(30), 1, 6, 5), RangeError);
    assert.throws(() => avgPool4Pad1(new Float32Array(0), new Float32Array(5), 1, 1, 5), RangeError);
  });
});

describe('resizeBilinear', () => {
  it('matches the reference when upsampling 6x5 -> 7x9 (non-uniform factors)', () => {
    const out = new Float32Array(2 * 7 * 9);
    resizeBilinear(out, hashArray(2 * 6 * 5, 1), 2, 6, 5, 7, 9);
    assertClose(out, RESIZE_2x6x5_TO_7x9, V_RTOL, V_ATOL);
  });

  it('matches the reference when downsampling 6x5 -> 4x3 (no antialias)', () => {
    const out = new Float32Array(2 * 4 * 3);
    resizeBilinear(out, hashArray(2 * 6 * 5, 1), 2, 6, 5, 4, 3);
    assertClose(out, RESIZE_2x6x5_TO_4x3, V_RTOL, V_ATOL);
  });

  it("matches the reference on MagicFusion's 63 -> 64 width (3x63 -> 2x64 strip)", () => {
    const out = new Float32Array(2 * 64);
    resizeBilinear(out, hashArray(3 * 63, 2), 1, 3, 63, 2, 64);
    assertClose(out, RESIZE_STRIP_3x63_TO_2x64, V_RTOL, V_ATOL);
  });

  it('is the identity for equal sizes and reproduces the 63 -> 64 edge rules', () => {
    const src = hashArray(4 * 6, 7);
    const same = new Float32Array(src.length);
    resizeBilinear(same, src, 1, 4, 6, 4, 6);
    assert.deepEqual(same, src);

    // A linear ramp stays linear inside, and both edges clamp to the end samples.
    const ramp = new Float64Array(63);
    for (let i = 0; i < 63; i++) ramp[i] = i;
    const out = new Float64Array(64);
    resizeBilinear(out, ramp, 1, 1, 63, 1, 64);
    assert.equal(out[0], 0); // src = 0.5*63/64 - 0.5 < 0 -> clamped
    assert.equal(out[63], 62); // i0 = 62, i1 = min(63, 62)
    for (let j = 1; j < 63; j++) assert.ok(Math.abs(out[j]! - ((j + 0.5) * 63 / 64 - 0.5)) < 1e-12, `ramp at ${j}: ${out[j]}`);
  });
});

describe('SaliencyComputer', () => {
  const small: LatentShape = { batch: 2, channels: 3, height: 8, width: 7 };
  const smallCond = hashArray(2 * 3 * 8 * 7, 3);
  const smallUncond = hashArray(2 * 3 * 8 * 7, 4);

  it('matches the reference for B=2, C=3, H=8, W=7 at scale 10, k 1', () => {
    assertClose(saliency(small, smallCond, smallUncond, 10, 1), SAL_2x3x8x7_S10_K1, P_RTOL, P_ATOL);
  });

  it('matches the reference for B=2, C=3, H=8, W=7 at scale 7.5, k 0.25', () => {
    assertClose(saliency(small, smallCond, smallUncond, 7.5, 0.25), SAL_2x3x8x7_S7_5_K0_25, P_RTOL, P_ATOL);
  });

  it('matches the reference for B=2, C=4, 64x64 at sampled positions, checksums and maxima', () => {
    const shape: LatentShape = { batch: 2, channels: 4, height: 64, width: 64 };
    const n = 2 * 4 * 64 * 64;
    const out = saliency(shape, hashArray(n, 5), hashArray(n, 6), 10, 1);
    const hw = 64 * 64;
    for (const [b, y, x, expected] of BIG_SAMPLES) {
      assertClose([out[b * hw + y * 64 + x]!], [expected], P_RTOL, P_ATOL);
    }
    for (let b = 0; b < 2; b++) {
      let sum = 0;
      let checksum = 0;
      let max = -Infinity;
      let argmax = -1;
      for (let p = 0; p < hw; p++) {
        const v = out[b * hw + p]!;
        sum += v;
        checksum += v * (p % 97);
        if (v > max) {
          max = v;
          argmax = p;
        }
      }
      assertClose([sum, checksum, max], [1, BIG_CHECKSUMS[b]!, BIG_MAX[b]!], P_RTOL, P_ATOL);
      assert.equal(argmax, BIG_ARGMAX[b]);
    }
  });

  it('gives the same result as blurring every channel before the mean (the original order)', () => {
    const shape: LatentShape = { batch: 3, channels: 5, height: 9, width: 13 };
    const { batch: B, channels: C, height: H, width: W } = shape;
    const hw = H * W;
    const cond = hashArray(B * C * hw, 11);
    const uncond = hashArray(B * C * hw, 12);
    const scale = 6;
    const k = 0.7;
    const got = saliency(shape, cond, uncond, scale, k);

    const abs = new Float64Array(hw);
    const pooled = new Float64Array((H - 1) * (W - 1));
    const blurred = new Float64Array(hw);
    const mean = new Float64Array(hw);
    const expected = new Float64Array(B * hw);
    for (let b = 0; b < B; b++) {
      mean.fill(0);
      for (let c = 0; c < C; c++) {
        const base = (b * C + c) * hw;
        for (let p = 0; p < hw; p++) abs[p] = Math.abs(scale * (cond[base + p]! - uncond[base + p]!));
        avgPool4Pad1(pooled, abs, 1, H, W);
        resizeBilinear(blurred, pooled, 1, H - 1, W - 1, H, W);
        for (let p = 0; p < hw; p++) mean[p]! += blurred[p]! / C;
      }
      let sum = 0;
      for (let p = 0; p < hw; p++) sum += Math.exp(k * mean[p]!);
      for (let p = 0; p < hw; p++) expected[b * hw + p] = Math.exp(k * mean[p]!) / sum;
    }
    assertClose(got, expected, P_RTOL, P_ATOL);
  });

  it('k = 0 and scale = 0 give the uniform map 1/(H*W)', () => {
    const uniform = new Float32Array(2 * 8 * 7).fill(1 / 56);
    assert.deepEqual(saliency(small, smallCond, smallUncond, 10, 0), uniform);
    assert.deepEqual(saliency(small, smallCond, smallUncond, 0, 3), uniform);
  });

  it('larger k sharpens the map without moving its peak', () => {
    const hw = 56;
    let previousMax = 0;
    let previousEntropy = Infinity;
    let peak = -1;
    for (const k of [0.1, 0.5, 1, 2, 5]) {
      const p = saliency(small, smallCond, smallUncond, 10, k).subarray(0, hw);
      let max = -Infinity;
      let at = -1;
      for (let i = 0; i < hw; i++) {
        if (p[i]! > max) {
          max = p[i]!;
          at = i;
        }
      }
      const h = entropy(p, 0, hw);
      assert.ok(max > previousMax, `max grows at k=${k}`);
      assert.ok(h < previousEntropy, `entropy falls at k=${k}`);
      if (peak >= 0) assert.equal(at, peak);
      previousMax = max;
      previousEntropy = h;
      peak = at;
    }
  });

  it('is stable for huge logits and symmetric in the sign of scale', () => {
    const hot = saliency(small, smallCond, smallUncond, 10, 1e4);
    hot.forEach((v, i) => assert.ok(Number.isFinite(v), `finite at ${i}: ${v}`));
    for (let b = 0; b < 2; b++) {
      let sum = 0;
      for (let p = 0; p < 56; p++) sum += hot[b * 56 + p]!;
      assert.ok(Math.abs(sum - 1) < 1e-6, `sample ${b} sums to ${sum}`);
    }
    assert.deepEqual(saliency(small, smallCond, smallUncond, -10, 1), saliency(small, smallCond, smallUncond, 10, 1));
  });

  it('treats the samples of a batch independently', () => {
    const one: LatentShape = { batch: 1, channels: 3, height: 8, width: 7 };
    const n = 3 * 56;
    const both = saliency(small, smallCond, smallUncond, 10, 1);
    assert.deepEqual(saliency(one, smallCond.subarray(0, n), smallUncond.subarray(0, n), 10, 1), both.subarray(0, 56));
    assert.deepEqual(saliency(one, smallCond.subarray(n), smallUncond.subarray(n), 10, 1), both.subarray(56));
  });

  it('reuses its buffers across calls without carrying state', () => {
    const computer = new SaliencyComputer(small);
    const out = new Float32Array(2 * 56);
    computer.compute(out, hashArray(336, 21), hashArray(336, 22), 3, 2);
    computer.compute(out, smallCond, smallUncond, 10, 1);
    assertClose(out, SAL_2x3x8x7_S10_K1, P_RTOL, P_ATOL);
  });

  it('rejects bad shapes, lengths and parameters', () => {
    assert.throws(() => new SaliencyComputer({ batch: 1, channels: 4, height: 1, width: 8 }), RangeError);
    assert.throws(() => new SaliencyComputer({ batch: 0, channels: 4, height: 8, width: 8 }), RangeError);
    assert.throws(() => new SaliencyComputer({ batch: 1, channels: 2.5, height: 8, width: 8 }), RangeError);
    const computer = new SaliencyComputer(small);
    const out = new Float32Array(112);
    assert.throws(() => computer.compute(out, smallCond.subarray(1), smallUncond, 10, 1), RangeError);
    assert.throws(() => computer.compute(new Float32Array(111), smallCond, smallUncond, 10, 1), RangeError);
    assert.throws(() => computer.compute(out, smallCond, smallUncond, Number.NaN, 1), RangeError);
    assert.throws(() => computer.compute(out, smallCond, smallUncond, 10, Infinity), RangeError);
  });
});
